"""What ``eventfold bench`` says about durability: a filesystem in memory, ``--not-durable``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from benchmarks.harness import SCENARIOS, BenchContext, ScenarioResult, _machine, add_arguments, run
from benchmarks.harness._machine import memory_filesystem_warning


def bench(*arguments: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    out = io.StringIO()
    code = run(parser.parse_args(["--suite", "tiny", "--progress", "never", *arguments]), out)
    return code, out.getvalue()


@pytest.mark.parametrize("filesystem", ["tmpfs", "ramfs"])
def test_a_filesystem_in_memory_is_warned_about(filesystem: str) -> None:
    warning = memory_filesystem_warning(filesystem)
    assert warning is not None
    assert f"the journals are on {filesystem}" in warning
    assert "--journal-dir" in warning


@pytest.mark.parametrize("filesystem", ["ext4", "xfs", "btrfs", None])
def test_a_disk_is_not_warned_about(filesystem: str | None) -> None:
    assert memory_filesystem_warning(filesystem) is None


def test_figures_measured_in_memory_are_not_durable_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_machine, "_filesystem_type", lambda directory: "tmpfs")
    code, text = bench(
        "--scenario", "hot-actor", "--scenario", "activation",
        "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "report"),
    )  # fmt: skip
    assert code == 0
    lines = text.splitlines()
    assert "in memory (NOT DURABLE)" in lines[0]
    warnings = [line for line in lines if line.startswith("WARNING: the journals are on tmpfs")]
    assert len(warnings) == 1
    assert lines.index(warnings[0]) < lines.index(next(x for x in lines if x.startswith("== ")))
    assert "== targets ==" not in text, "no target is checked on figures that are not durable"
    hot = [line for line in lines if "durable one-event commands/s" in line and "in_flight" in line]
    assert hot
    assert all("[NOT DURABLE]" in line for line in hot)
    orjson = next(line for line in lines if "orjson encode" in line)
    assert "NOT DURABLE" not in orjson, "a CPU figure does not depend on the filesystem"
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert document["machine"]["filesystem_in_memory"] is True
    assert any("the journals are on tmpfs" in warning for warning in document["warnings"])
    assert document["targets"] == []
    figures = {
        figure["key"]: figure["durable"]
        for scenario in document["scenarios"]
        for figure in scenario["figures"]
    }
    assert figures["limits.fdatasync_per_s"] is False
    assert figures["limits.fdatasync_latency_ms"] is False
    assert figures["limits.fdatasync_pre_zeroed_per_s"] is False
    assert figures["limits.orjson_encode_per_s"] is True
    assert not any(durable for key, durable in figures.items() if key.startswith("hot-actor."))
    report = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "> Warning: the journals are on tmpfs" in report


def test_figures_on_a_disk_stay_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_machine, "_filesystem_type", lambda directory: "ext4")
    code, text = bench("--scenario", "activation", "--json", str(tmp_path / "b.json"))
    assert code == 0
    assert "fsync per batch (durable)" in text.splitlines()[0]
    assert "NOT DURABLE" not in text
    assert "== targets ==" in text
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert document["machine"]["filesystem_in_memory"] is False
    assert document["targets"]


def test_a_run_without_fsync_warns_in_the_console_before_the_figures() -> None:
    code, text = bench("--scenario", "journal", "--not-durable")
    assert code == 0
    lines = text.splitlines()
    warning = "WARNING: FileJournal ran with durable=False (no fsync)"
    found = [index for index, line in enumerate(lines) if line.startswith(warning)]
    assert len(found) == 1
    assert found[0] < lines.index(next(x for x in lines if x.startswith("== limits")))


def _broken(context: BenchContext) -> ScenarioResult:
    raise OSError(5, "Input/output error")


def test_a_run_without_fsync_warns_even_when_the_limits_cannot_be_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The warnings wait for the disk's own to be printed with them; they are not lost with it.
    monkeypatch.setitem(SCENARIOS, "limits", (SCENARIOS["limits"][0], _broken))
    code, text = bench("--scenario", "limits", "--not-durable")
    assert code == 1
    assert "  skipped: failed: OSError: [Errno 5] Input/output error" in text
    warning = "WARNING: FileJournal ran with durable=False (no fsync)"
    assert len([line for line in text.splitlines() if line.startswith(warning)]) == 1
