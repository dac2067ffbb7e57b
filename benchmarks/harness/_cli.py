"""``eventfold bench``: arguments, and running them."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from runtime._cli_output import EXIT_READER_GONE

from ._output_files import write_whole
from ._paths import directory_problem, file_problem
from ._progress import Progress
from ._report import REPORT_FILES, write_report
from ._results import BenchReport
from ._runner import SCENARIOS, BenchSettings, OutputClosed, run_bench
from ._sizes import PRESETS
from ._workload import (
    DEFAULT_WORKLOAD,
    WorkloadError,
    current_directory_importable,
    load_workload,
)

DESCRIPTION = """\
Measure eventfold on this machine, durably, next to the machine's own limits and the
eventsourcing package. The default suite takes about a minute on 2 cores; --quick about 15 s.
"""

TRIO_MISSING = (
    "argument --backend: trio is not installed; install it with: pip install eventfold[trio]"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``eventfold bench``)."""
    parser.description = DESCRIPTION
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="suite",
        help="the same scenarios with less work each (about 15 s)",
    )
    size.add_argument(
        "--suite",
        choices=sorted(PRESETS),
        default="full",
        help="how much work per scenario (default: full)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        default=[],
        metavar="NAME",
        help="run only this scenario (repeatable); one of: "
        + ", ".join(SCENARIOS)
        + ". limits always runs first as the baseline; bare-loop runs with hot-actor "
        "and many-actors, whose figures are read against it",
    )
    parser.add_argument(
        "--journal-dir",
        type=Path,
        metavar="DIR",
        help="create the journals under DIR, to measure that disk (default: a temporary directory)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="write every figure, with machine and version information, to FILE",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write report.md, throughput.svg and latency.svg to DIR",
    )
    parser.add_argument(
        "--aggregate",
        metavar="package.module:NAME",
        help="drive the scenarios with your own Aggregate object",
    )
    parser.add_argument(
        "--commands",
        metavar="package.module:FUNCTION",
        help="your command factory: commands(entity_id: str, index: int) -> "
        "command; index counts one entity's commands from 0",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        metavar="N",
        help="measure every figure N times after the warm-up (default: 3; medians with "
        "min - max are reported)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=_thresholds,
        metavar="N[,N1[,N2]]",
        help="run with gc.set_threshold(N, N1, N2), as an application may tune it (see "
        "docs/runtime.md); the default keeps the process's thresholds. Shown in the output",
    )
    parser.add_argument(
        "--not-durable",
        action="store_true",
        help="run FileJournal with durable=False (no fsync); every eventfold "
        "figure is then labelled NOT DURABLE",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop (asyncio uses uvloop when installed; trio needs the trio "
        "extra: pip install eventfold[trio])",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress line on stderr (auto: only on a terminal)",
    )


GC_THRESHOLD_MAX = 2**31 - 1
"""The largest threshold ``gc.set_threshold`` takes (a C int)."""


def _thresholds(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 1 to 3 comma-separated integers (for example 50000,20,100)"
        ) from None
    if not 1 <= len(values) <= 3 or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 1 to 3 comma-separated non-negative integers"
        )
    if any(value > GC_THRESHOLD_MAX for value in values):
        raise argparse.ArgumentTypeError(
            f"{text!r} has a threshold above {GC_THRESHOLD_MAX}, the largest gc.set_threshold takes"
        )
    return values


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``eventfold bench`` with parsed ``args``; return the process exit code."""
    out = out if out is not None else sys.stdout
    if (args.aggregate is None) != (args.commands is None):
        return _usage_error("--aggregate and --commands go together; give both or neither")
    if args.repetitions is not None and args.repetitions < 1:
        return _usage_error("--repetitions must be at least 1")
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        return _usage_error(TRIO_MISSING)
    # Checked before anything runs: a bad path found after the run would lose its figures.
    problem = _output_paths_problem(args)
    if problem is not None:
        return _usage_error(problem)
    # As with ``python -m``, the user's modules are found in the current directory, also by
    # imports they make while the run goes on.
    with current_directory_importable():
        return _run(args, out)


def _run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        workload = (
            load_workload(args.aggregate, args.commands)
            if args.aggregate is not None
            else DEFAULT_WORKLOAD
        )
    except WorkloadError as error:
        return _usage_error(str(error))
    suite = args.suite or "full"
    sizes = PRESETS[suite]
    if args.repetitions is not None:
        sizes = dataclasses.replace(sizes, repetitions=args.repetitions)
    settings = BenchSettings(
        sizes=sizes,
        suite=suite,
        scenarios=tuple(args.scenario),
        journal_dir=args.journal_dir,
        durable=not args.not_durable,
        backend=args.backend,
        workload=workload,
        gc_threshold=args.gc_threshold,
    )
    enabled = {"auto": None, "always": True, "never": False}[args.progress]
    try:
        report = run_bench(settings, out, Progress(enabled=enabled))
    except OutputClosed as closed:
        # The whole run is measured: what --json and --report ask for is still written, and
        # a failure to write them is an error, said on stderr; so is a failed scenario.
        _silence(out)
        if not _write_outputs(args, closed.report, None):
            return 1
        return 1 if _any_failed(closed.report) else EXIT_READER_GONE
    except BrokenPipeError:
        # The reader went away (``eventfold bench | head``): stop quietly, as other tools do.
        _silence(out)
        return EXIT_READER_GONE
    try:
        written = _write_outputs(args, report, out)
    except BrokenPipeError:
        _silence(out)
        return EXIT_READER_GONE
    return 1 if _any_failed(report) or not written else 0


def _silence(out: TextIO) -> None:
    """Keep Python from complaining again about a closed stdout when it flushes at exit."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _usage_error(message: str) -> int:
    print(f"eventfold bench: error: {message}", file=sys.stderr)
    return 2


def _output_paths_problem(args: argparse.Namespace) -> str | None:
    problems = [
        None if args.json is None else file_problem("--json", args.json),
        None if args.report is None else directory_problem("--report", args.report, REPORT_FILES),
        None if args.journal_dir is None else directory_problem("--journal-dir", args.journal_dir),
    ]
    return next((problem for problem in problems if problem is not None), None)


def _write_outputs(args: argparse.Namespace, report: BenchReport, out: TextIO | None) -> bool:
    """Write the JSON and the report; a failure is reported, and the other is still written
    (the figures are in ``out`` already). Then say in ``out`` (if any) what was written.
    Answers whether everything was written."""
    written = True
    paths: list[Path] = []
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_whole(args.json, json.dumps(report.to_json(), indent=2) + "\n")
        except OSError as error:
            _write_error("--json", args.json, error, shown=out is not None)
            written = False
        else:
            paths.append(args.json)
    if args.report is not None:
        try:
            paths += write_report(report, args.report)
        except OSError as error:
            _write_error("--report", args.report, error, shown=out is not None)
            written = False
    if out is not None:
        for path in paths:
            print(f"wrote {path}", file=out)
    return written


def _write_error(option: str, path: Path, error: OSError, *, shown: bool) -> None:
    """Report a file the run could not write; ``shown``: whether its figures were printed."""
    failed = error.filename if error.filename is not None else path
    where = (
        "the figures are in the output above"
        if shown
        else "the standard output closed during the run, so its figures may be lost"
    )
    print(
        f"eventfold bench: error: argument {option}: cannot write {failed}: "
        f"{error.strerror or error}; {where}",
        file=sys.stderr,
    )


def _any_failed(report: BenchReport) -> bool:
    return any(_failed(result.skipped) for result in report.scenarios)


def _failed(skipped: str | None) -> bool:
    return skipped is not None and skipped.startswith("failed:")


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.harness``: the same as ``eventfold bench``."""
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))
