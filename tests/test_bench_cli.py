"""``eventfold bench`` end to end: options, JSON, the report, a user's own workload, errors."""

from __future__ import annotations

import argparse
import gc
import inspect
import io
import json
import sys
import textwrap
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from benchmarks import harness
from benchmarks.harness import BenchReport, Progress, add_arguments, run
from benchmarks.harness import _cli as harness_cli
from benchmarks.harness._machine import busy_warning
from runtime._cli_output import EXIT_READER_GONE


def bench(*arguments: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    out = io.StringIO()
    code = run(parser.parse_args(["--suite", "tiny", "--progress", "never", *arguments]), out)
    return code, out.getvalue()


def test_json_and_report_hold_every_figure_without_paths(tmp_path: Path) -> None:
    journals, output = tmp_path / "journals", tmp_path / "out"
    code, text = bench(
        "--scenario", "many-actors", "--scenario", "peer", "--journal-dir", str(journals),
        "--json", str(output / "bench.json"), "--report", str(output / "report"),
    )  # fmt: skip
    assert code == 0
    lines = text.splitlines()
    assert lines[2].startswith("disk: write+fdatasync"), "fsync latency comes first"
    document = json.loads((output / "bench.json").read_text(encoding="utf-8"))
    assert document["format"] == "eventfold-bench/1"
    names = [s["name"] for s in document["scenarios"]]
    assert names == ["limits", "bare-loop", "many-actors", "peer"]
    assert document["machine"]["versions"]["eventfold"]
    assert document["machine"]["cpu_count"] >= 1
    assert document["settings"]["durable"] is True
    for scenario in document["scenarios"]:
        for figure in scenario["figures"]:
            assert figure["min"] <= figure["median"] <= figure["max"]
            assert len(figure["samples"]) >= 1
    kinds = {ratio["kind"] for ratio in document["ratios"]}
    assert kinds == {"limit", "peer"}
    report = (output / "report" / "report.md").read_text(encoding="utf-8")
    assert "# eventfold benchmark report" in report
    assert "many-actors" in report
    assert "![throughput](throughput.svg)" in report
    for chart in ("throughput.svg", "latency.svg"):
        root = ElementTree.parse(output / "report" / chart).getroot()
        assert root.tag.endswith("svg")
    figures_text = "\n".join(line for line in lines if not line.startswith("wrote "))
    everything = figures_text + report + json.dumps(document)
    assert str(tmp_path) not in everything, "no path of the machine goes into the figures"
    assert not journals.exists(), "scenario journals, and the directory made for them, are removed"


def test_not_durable_runs_say_so_everywhere(tmp_path: Path) -> None:
    code, text = bench("--scenario", "hot-actor", "--not-durable", "--json",
                       str(tmp_path / "b.json"))  # fmt: skip
    assert code == 0
    assert "NO FSYNC (NOT DURABLE)" in text.splitlines()[0]
    assert "[NOT DURABLE]" in text
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    hot = next(s for s in document["scenarios"] if s["name"] == "hot-actor")
    assert all(figure["durable"] is False for figure in hot["figures"])
    assert any("NOT DURABLE" in warning for warning in document["warnings"])


USER_MODULE = textwrap.dedent(
    """
    from dataclasses import dataclass

    from runtime import Aggregate, CommandRejected


    @dataclass(frozen=True)
    class Open:
        pass


    @dataclass(frozen=True)
    class Add:
        amount: int


    @dataclass(frozen=True)
    class Opened:
        pass


    @dataclass(frozen=True)
    class Added:
        amount: int


    def decide(state, command):
        if isinstance(command, Open):
            if state is not None:
                raise CommandRejected("already open")
            return [Opened()]
        if state is None:
            raise CommandRejected("open the counter first")
        return [Added(command.amount)]


    def evolve(state, event):
        return 0 if isinstance(event, Opened) else state + event.amount


    COUNTER = Aggregate("counter", None, decide, evolve, events={"Opened": Opened, "Added": Added})


    def commands(entity_id, index):
        return Open() if index == 0 else Add(index)


    def bad_first(entity_id, index):
        return Add(index)
    """
)


def test_a_users_aggregate_and_command_factory_drive_the_scenarios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_counter.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_counter", raising=False)
    code, text = bench(
        "--scenario", "many-actors", "--scenario", "hot-actor", "--scenario", "recovery",
        "--aggregate", "user_counter:COUNTER", "--commands", "user_counter:commands",
    )  # fmt: skip
    assert code == 0, text
    assert "workload: user_counter:COUNTER with user_counter:commands" in text
    assert "failed" not in text


def test_repetitions_set_how_many_samples_each_figure_has(tmp_path: Path) -> None:
    code, _ = bench("--scenario", "activation", "--repetitions", "4",
                    "--json", str(tmp_path / "b.json"))  # fmt: skip
    assert code == 0
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    activation = next(s for s in document["scenarios"] if s["name"] == "activation")
    assert {len(figure["samples"]) for figure in activation["figures"]} == {4}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--repetitions", "0"], "at least 1"),
        (["--aggregate", "user_counter:COUNTER"], "go together"),
        (["--aggregate", "no_such_module:X", "--commands", "no_such_module:f"], "no module"),
        (["--aggregate", "json:dumps", "--commands", "json:loads"], "not an eventfold Aggregate"),
        (["--aggregate", "nocolon", "--commands", "json:loads"], "package.module:name"),
        (
            ["--aggregate", "user_counter:COUNTER", "--commands", "user_counter:bad_first"],
            "cannot be decided on the aggregate's initial state",
        ),
    ],
)
def test_bad_workload_options_are_usage_errors(
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "user_counter.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _ = bench(*arguments)
    assert code == 2
    assert message in capsys.readouterr().err


def test_progress_stays_quiet_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    progress.begin("limits")
    progress.step("chunk 1/2")
    progress.clear()
    assert stream.getvalue() == ""
    forced = Progress(stream, enabled=True)
    forced.begin("limits")
    forced.step("chunk 1/2")
    assert "limits: chunk 1/2" in stream.getvalue()


def test_a_busy_machine_is_called_out() -> None:
    assert busy_warning([0.2, 0.1, 0.1], 2) is None
    assert busy_warning(None, 2) is None
    warning = busy_warning([3.5, 2.0, 1.0], 2)
    assert warning is not None
    assert "load average 3.50 on 2 CPUs" in warning


def test_the_harness_exports_what_it_names() -> None:
    exported = list(harness.__all__)
    assert len(set(exported)) == len(exported)
    assert all(hasattr(harness, name) for name in exported)
    public = {name for name, value in vars(harness).items()
              if not name.startswith("_") and not inspect.ismodule(value)}  # fmt: skip
    assert public <= set(exported)


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_stops_the_run_quietly() -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args(
        ["--suite", "tiny", "--scenario", "limits", "--progress", "never"]
    )
    assert run(arguments, _ClosedPipe()) == EXIT_READER_GONE


def test_gc_thresholds_apply_to_the_run_only_and_are_reported(tmp_path: Path) -> None:
    before = gc.get_threshold()
    code, text = bench("--scenario", "limits", "--gc-threshold", "50000,20,100",
                       "--json", str(tmp_path / "b.json"))  # fmt: skip
    assert code == 0
    assert "gc thresholds 50000, 20, 100 (set by --gc-threshold)" in text
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert document["settings"]["gc_threshold"] == [50000, 20, 100]
    assert document["settings"]["gc_tuned"] is True
    assert gc.get_threshold() == before


def test_one_gc_threshold_is_reported_with_the_two_it_keeps(tmp_path: Path) -> None:
    _, second, third = gc.get_threshold()
    code, text = bench("--scenario", "limits", "--gc-threshold", "50000",
                       "--json", str(tmp_path / "b.json"))  # fmt: skip
    assert code == 0
    assert f"gc thresholds 50000, {second}, {third} (set by --gc-threshold)" in text
    document = json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))
    assert document["settings"]["gc_threshold"] == [50000, second, third]


def test_bad_gc_thresholds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--gc-threshold", "lots"])
    assert "comma-separated integers" in capsys.readouterr().err


def _bad_output_paths(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory", encoding="utf-8")
    report_with_a_directory = tmp_path / "report"
    (report_with_a_directory / "report.md").mkdir(parents=True)
    return {
        "json is a directory": (["--json", str(tmp_path)], f"argument --json: {tmp_path} is a "
                                "directory"),
        "json under a file": (["--json", str(a_file / "b.json")], f"{a_file} is not a directory"),
        "report is a file": (["--report", str(a_file)], f"argument --report: {a_file} is not a "
                             "directory"),
        "report file is a directory": (["--report", str(report_with_a_directory)],
                                       f"{report_with_a_directory / 'report.md'} is a directory"),
        "journal-dir is a file": (["--journal-dir", str(a_file)], f"argument --journal-dir: "
                                  f"{a_file} is not a directory"),
        "journal-dir under a file": (["--journal-dir", str(a_file / "journals")],
                                     f"{a_file} is not a directory"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "json is a directory",
        "json under a file",
        "report is a file",
        "report file is a directory",
        "journal-dir is a file",
        "journal-dir under a file",
    ],
)
def test_bad_output_paths_are_usage_errors_before_anything_runs(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments, message = _bad_output_paths(tmp_path)[case]
    before = sorted(path.name for path in tmp_path.rglob("*"))
    code, text = bench("--scenario", "limits", *arguments)
    assert code == 2
    assert text == "", "no scenario ran"
    error = capsys.readouterr().err
    assert error.startswith("eventfold bench: error: ")
    assert error.count("\n") == 1, "one line, no traceback"
    assert message in error
    assert sorted(path.name for path in tmp_path.rglob("*")) == before


def test_outputs_that_cannot_be_written_after_the_run_are_reported_with_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path, report = tmp_path / "b.json", tmp_path / "report"
    measure = harness.run_bench

    def measure_then_block_the_json_path(*arguments: Any) -> BenchReport:
        measured = measure(*arguments)
        json_path.mkdir()  # Something took the path while the scenarios ran.
        return measured

    monkeypatch.setattr(harness_cli, "run_bench", measure_then_block_the_json_path)
    code, text = bench("--scenario", "limits", "--json", str(json_path), "--report", str(report))
    assert code == 1
    assert "== limits:" in text, "the figures are printed"
    assert f"wrote {report / 'report.md'}" in text, "the other output is still written"
    assert (report / "report.md").is_file()
    error = capsys.readouterr().err
    assert error.startswith("eventfold bench: error: ")
    assert f"cannot write {json_path}: Is a directory" in error
    assert error.rstrip().endswith("the figures are in the output above")
    assert "Traceback" not in error
