"""A scenario that fails says why in the user's own words, not in a task group's."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from benchmarks import harness
from benchmarks.harness import SCENARIOS, BenchContext, ScenarioResult, add_arguments, run
from benchmarks.harness import _cli as harness_cli
from benchmarks.harness._runner import failure_reason
from runtime._cli_output import EXIT_READER_GONE

ORDERS = textwrap.dedent(
    """
    from dataclasses import dataclass

    from runtime import Aggregate, CommandRejected


    @dataclass(frozen=True)
    class Place:
        pass


    @dataclass(frozen=True)
    class Placed:
        pass


    def decide(state, command):
        if state:
            raise CommandRejected("placed already")
        return [Placed()]


    ORDER = Aggregate("order", False, decide, lambda state, event: True,
                      events={"Placed": Placed})


    def always_place(entity_id, index):
        return Place()  # A mistake: every entity accepts only its first command.
    """
)


def test_a_group_is_reported_by_its_errors() -> None:
    rejected = ValueError("placed already")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [rejected, rejected]), rejected])
    assert failure_reason(nested) == "ValueError: placed already"
    assert failure_reason(rejected) == "ValueError: placed already"
    mixed = ExceptionGroup("many", [KeyError("a"), OSError("b"), ValueError("c"), TypeError("d")])
    assert failure_reason(mixed) == "KeyError: 'a'; OSError: b; ValueError: c; and 1 other error"
    three = ExceptionGroup("three", [KeyError("a"), OSError("b"), ValueError("c")])
    assert failure_reason(three) == "KeyError: 'a'; OSError: b; ValueError: c"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_command_factory_mistake_is_reported_as_the_rejection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    (tmp_path / "mistaken_orders.py").write_text(ORDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mistaken_orders", raising=False)
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    out = io.StringIO()
    arguments = parser.parse_args([
        "--suite", "tiny", "--progress", "never", "--scenario", "hot-actor",
        "--aggregate", "mistaken_orders:ORDER", "--commands", "mistaken_orders:always_place",
        "--json", str(tmp_path / "b.json"), "--backend", backend,
    ])  # fmt: skip
    assert run(arguments, out) == 1
    failed = "failed: CommandRejected: placed already"
    text = out.getvalue()
    assert f"  skipped: {failed}\n" in text
    assert "ExceptionGroup" not in text
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    skipped = {s["name"]: s["skipped"] for s in document["scenarios"]}
    assert skipped["hot-actor"] == failed
    assert skipped["bare-loop"] == failed


def test_trio_missing_is_a_usage_error_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "trio", None)  # As if it were not installed.
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    out = io.StringIO()
    arguments = parser.parse_args(["--suite", "tiny", "--backend", "trio", "--progress", "never"])
    assert run(arguments, out) == 2
    assert out.getvalue() == "", "no scenario ran"
    error = capsys.readouterr().err
    assert error == (
        "eventfold bench: error: argument --backend: trio is not installed; install it with: "
        "pip install eventfold[trio]\n"
    )


def test_a_report_file_that_cannot_be_overwritten_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("an earlier report\n", encoding="utf-8")
    (report / "report.md").chmod(0o444)
    if os.access(report / "report.md", os.W_OK):  # Permissions do not bind this user (root).
        real_access = os.access

        def access(path: Any, mode: int, **keywords: Any) -> bool:
            read_only = Path(path) == report / "report.md" and mode & os.W_OK
            return not read_only and real_access(path, mode, **keywords)

        monkeypatch.setattr(os, "access", access)
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    out = io.StringIO()
    arguments = parser.parse_args(
        ["--suite", "tiny", "--scenario", "limits", "--progress", "never", "--report", str(report)]
    )
    assert run(arguments, out) == 2
    assert out.getvalue() == "", "no scenario ran"
    assert capsys.readouterr().err == (
        f"eventfold bench: error: argument --report: {report / 'report.md'} is not writable "
        f"(permission denied)\n"
    )


@pytest.mark.parametrize("given", ["2147483648", "700,10,99999999999"])
def test_a_gc_threshold_too_large_is_a_usage_error(
    given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--gc-threshold", given])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"argument --gc-threshold: '{given}' has a threshold above 2147483647" in error


def test_the_largest_gc_threshold_is_taken(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--gc-threshold", "2147483647",
    ])  # fmt: skip
    assert run(arguments, io.StringIO()) == 0


class _ClosedAfterTheSummary(io.StringIO):
    """An output whose reader goes away once the summary is printed."""

    def write(self, text: str) -> int:
        if text.startswith("wrote "):
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_reader_that_leaves_before_the_files_are_named_stops_the_run_quietly(
    tmp_path: Path,
) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--json", str(tmp_path / "b.json"),
    ])  # fmt: skip
    out = _ClosedAfterTheSummary()
    assert run(arguments, out) == EXIT_READER_GONE
    assert "total " in out.getvalue()
    assert (tmp_path / "b.json").is_file()


class _ClosedAtTheSummary(io.StringIO):
    """An output whose reader goes away once the scenarios are printed."""

    def write(self, text: str) -> int:
        if text.startswith("total "):
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_the_outputs_are_written_when_the_reader_leaves_at_the_summary(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--json", str(tmp_path / "b.json"), "--report", str(tmp_path / "report"),
    ])  # fmt: skip
    out = _ClosedAtTheSummary()
    assert run(arguments, out) == EXIT_READER_GONE
    assert "== limits" in out.getvalue()
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert [scenario["name"] for scenario in document["scenarios"]] == ["limits"]
    assert (tmp_path / "report" / "report.md").is_file()


def test_a_failed_scenario_keeps_exit_status_1_when_the_reader_leaves_at_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run had failed by the time the reader left: 141 would say that all was well but
    the reader."""
    (tmp_path / "mistaken_orders.py").write_text(ORDERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mistaken_orders", raising=False)
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--progress", "never", "--scenario", "hot-actor",
        "--aggregate", "mistaken_orders:ORDER", "--commands", "mistaken_orders:always_place",
        "--json", str(tmp_path / "b.json"),
    ])  # fmt: skip
    assert run(arguments, _ClosedAtTheSummary()) == 1
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    skipped = {scenario["name"]: scenario["skipped"] for scenario in document["scenarios"]}
    assert skipped["hot-actor"].startswith("failed:")


def test_an_output_not_written_after_the_reader_left_does_not_point_to_the_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "b.json"
    measure = harness.run_bench

    def measure_then_block_the_json_path(*arguments: Any) -> Any:
        try:
            return measure(*arguments)
        finally:
            json_path.mkdir()  # Something took the path while the scenarios ran.

    monkeypatch.setattr(harness_cli, "run_bench", measure_then_block_the_json_path)
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--json", str(json_path),
    ])  # fmt: skip
    assert run(arguments, _ClosedAtTheSummary()) == 1
    error = capsys.readouterr().err
    assert f"cannot write {json_path}: Is a directory" in error
    assert "the standard output closed during the run, so its figures may be lost" in error
    assert "in the output above" not in error


def test_the_journal_directories_a_run_creates_are_removed_after_it(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--journal-dir", str(tmp_path / "kept" / "made" / "for" / "the-run"),
    ])  # fmt: skip
    assert run(arguments, io.StringIO()) == 0
    assert [path.name for path in tmp_path.rglob("*")] == ["kept"]


def _interrupted(context: BenchContext) -> ScenarioResult:
    raise KeyboardInterrupt


def test_the_journal_directories_a_run_creates_are_removed_after_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SCENARIOS, "limits", (SCENARIOS["limits"][0], _interrupted))
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--journal-dir", str(tmp_path / "a" / "b" / "c"),
    ])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run(arguments, io.StringIO())
    assert list(tmp_path.iterdir()) == []
