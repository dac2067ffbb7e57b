"""Runs the selected scenarios in order, prints as it goes, and assembles the report."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import (
    _activation,
    _bare_loop,
    _hot_actor,
    _journal,
    _limits,
    _many_actors,
    _peer,
    _recovery,
)
from ._context import BenchContext
from ._format import fsync_headline, scenario_lines, summary_lines
from ._machine import busy_warning, load_average, machine_info, memory_filesystem_warning
from ._progress import Progress
from ._ratios import bare_loop_ratios, limit_ratios, peer_ratios, target_checks
from ._results import BenchReport, ScenarioResult
from ._sizes import Sizes
from ._workload import DEFAULT_WORKLOAD, Workload

ScenarioRun = Callable[[BenchContext], ScenarioResult]

SCENARIOS: dict[str, tuple[str, ScenarioRun]] = {
    module.NAME: (module.TITLE, module.run)
    for module in (
        _limits,
        _bare_loop,
        _journal,
        _many_actors,
        _hot_actor,
        _activation,
        _recovery,
        _peer,
    )
}
"""Every scenario by name, in the order a run executes them."""


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """What to run and how. ``scenarios`` empty means the whole suite."""

    sizes: Sizes
    suite: str
    scenarios: tuple[str, ...] = ()
    journal_dir: Path | None = None
    durable: bool = True
    backend: str = "asyncio"
    workload: Workload = DEFAULT_WORKLOAD
    gc_threshold: tuple[int, ...] | None = None
    """``gc.set_threshold(*gc_threshold)`` for the run (None: the process's own thresholds)."""

    def selected(self) -> list[str]:
        """The scenarios to run, in suite order; ``limits`` always first (the baseline), and
        ``bare-loop`` with the runtime scenarios that are read against it."""
        unknown = [name for name in self.scenarios if name not in SCENARIOS]
        if unknown:
            raise ValueError(
                f"unknown scenario {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(SCENARIOS)}"
            )
        wanted = set(self.scenarios) or set(SCENARIOS)
        if wanted & {_hot_actor.NAME, _many_actors.NAME}:
            wanted.add(_bare_loop.NAME)
        return [name for name in SCENARIOS if name == _limits.NAME or name in wanted]

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "scenarios": self.selected(),
            "journal_dir": "given" if self.journal_dir is not None else "temporary",
            "durable": self.durable,
            "backend": self.backend,
            "gc_threshold": gc_thresholds_in_effect(self.gc_threshold),
            "gc_tuned": self.gc_threshold is not None,
            "uvloop": self.backend == "asyncio" and uvloop_available(),
            "workload": self.workload.name,
            "repetitions": self.sizes.repetitions,
            "warmup": self.sizes.warmup,
        }


def gc_thresholds_in_effect(given: tuple[int, ...] | None) -> list[int]:
    """The three thresholds a run uses: ``gc.set_threshold`` with fewer than three values
    keeps the process's others."""
    current = list(gc.get_threshold())
    return current if given is None else [*given, *current[len(given) :]]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


@contextmanager
def _gc_threshold(threshold: tuple[int, ...] | None) -> Iterator[None]:
    """Apply ``gc.set_threshold(*threshold)`` for the run and restore the previous one."""
    previous = gc.get_threshold()
    if threshold is not None:
        gc.set_threshold(*threshold)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


@contextmanager
def _journal_directory(given: Path | None) -> Iterator[Path]:
    """The directory the scenarios make their journals in: ``given``, with the directories
    the run had to create for it removed afterwards, or a temporary one."""
    if given is not None:
        missing = [path for path in (given, *given.parents) if not path.exists()]
        given.mkdir(parents=True, exist_ok=True)
        try:
            yield given
        finally:
            for path in missing:  # Deepest first; one that is not empty now is kept.
                with suppress(OSError):
                    path.rmdir()
        return
    with tempfile.TemporaryDirectory(prefix="eventfold-bench-") as scratch:
        yield Path(scratch)


def _run_one(name: str, context: BenchContext) -> ScenarioResult:
    title, scenario = SCENARIOS[name]
    try:
        context.progress.begin(name)
        return scenario(context)
    except Exception as error:  # one broken scenario must not hide the others' figures
        context.progress.clear()
        traceback.print_exc(file=sys.stderr)
        return ScenarioResult(name, title, skipped=f"failed: {failure_reason(error)}")
    finally:
        context.progress.clear()


NOT_DURABLE_WARNING = (
    "FileJournal ran with durable=False (no fsync): eventfold's figures are NOT DURABLE "
    "and not comparable with the peer or with the write+fdatasync loop"
)


FAILURES_SHOWN = 3
"""How many different errors a failed scenario's reason names."""


def failure_reason(error: BaseException) -> str:
    """What went wrong, said by the errors themselves: the leaves of any exception groups
    (task groups wrap what their tasks raised), each different one once."""
    reasons = list(dict.fromkeys(f"{type(leaf).__name__}: {leaf}" for leaf in _leaves(error)))
    shown = "; ".join(reasons[:FAILURES_SHOWN])
    more = len(reasons) - FAILURES_SHOWN
    if more <= 0:
        return shown
    return f"{shown}; and {more} other error{'s' if more > 1 else ''}"


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def run_bench(settings: BenchSettings, out: TextIO, progress: Progress) -> BenchReport:
    """Run the selected scenarios, printing each one's figures to ``out`` as it completes."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    names = settings.selected()
    results: list[ScenarioResult] = []
    with (
        _gc_threshold(settings.gc_threshold),
        _journal_directory(settings.journal_dir) as directory,
    ):
        machine = machine_info(directory)
        in_memory = bool(machine["filesystem_in_memory"])
        warnings = _warnings_at_start(settings, machine)
        context = BenchContext(
            sizes=settings.sizes,
            directory=directory,
            workload=settings.workload,
            progress=progress,
            durable=settings.durable,
            backend=settings.backend,
        )
        _print(out, _banner(settings, machine))
        if _limits.NAME not in names:
            _print(out, [f"WARNING: {warning}" for warning in warnings])
        for name in names:
            result = _run_one(name, context)
            if in_memory:
                result = _measured_in_memory(result)
            results.append(result)
            if name == _limits.NAME:
                # The disk's cost comes first: everything after is read against it.
                if result.skipped is None:
                    warnings.extend(result.notes)
                    _print(out, [fsync_headline(result)])
                _print(out, [f"WARNING: {warning}" for warning in warnings])
            _print(out, scenario_lines(result))
    report = BenchReport(
        started_at=started_at,
        machine={**machine, "load_average_at_end": load_average()},
        settings={**settings.to_json(), "sizes": settings.sizes.to_json()},
        scenarios=tuple(results),
        ratios=tuple(limit_ratios(results) + bare_loop_ratios(results) + peer_ratios(results)),
        targets=tuple(target_checks(results)),
        warnings=tuple(warnings),
        elapsed_s=time.monotonic() - started,
    )
    try:
        _print(out, summary_lines(report))
    except BrokenPipeError as error:
        raise OutputClosed(report) from error
    return report


class OutputClosed(BrokenPipeError):
    """The reader of the output went away while the summary was printed: ``report`` holds
    the whole run all the same, to be written where else it was asked for."""

    def __init__(self, report: BenchReport) -> None:
        super().__init__("the output was closed while the summary was printed")
        self.report = report


def _warnings_at_start(settings: BenchSettings, machine: dict[str, Any]) -> list[str]:
    """What is known before anything is measured: printed with the disk's own warnings."""
    candidates = [
        memory_filesystem_warning(machine["filesystem"]),
        None if settings.durable else NOT_DURABLE_WARNING,
        busy_warning(machine["load_average_at_start"], machine["cpu_usable"]),
    ]
    return [warning for warning in candidates if warning is not None]


def _measured_in_memory(result: ScenarioResult) -> ScenarioResult:
    """``result`` with every figure its filesystem took part in marked not durable: on a
    filesystem held in memory, fsync reaches no disk (the orjson limits stay as measured)."""
    figures = tuple(
        dataclasses.replace(figure, durable=False)
        if figure.scenario != _limits.NAME or figure.name in _limits.DISK_FIGURES
        else figure
        for figure in result.figures
    )
    return dataclasses.replace(result, figures=figures)


def _banner(settings: BenchSettings, machine: dict[str, Any]) -> list[str]:
    versions = machine["versions"]
    if not settings.durable:
        mode = "NO FSYNC (NOT DURABLE)"
    elif machine["filesystem_in_memory"]:
        mode = "fsync per batch, in memory (NOT DURABLE)"
    else:
        mode = "fsync per batch (durable)"
    described = settings.to_json()
    loop = settings.backend + (" + uvloop" if described["uvloop"] else "")
    thresholds = ", ".join(map(str, described["gc_threshold"]))
    tuned = " (set by --gc-threshold)" if described["gc_tuned"] else ""
    return [
        f"eventfold bench ({settings.suite}): eventfold {versions['eventfold']}, Python "
        f"{machine['python']}, {machine['cpu_count']} CPUs, {loop}, journal {mode}, "
        f"filesystem {machine['filesystem']}",
        f"workload: {settings.workload.name}; {settings.sizes.repetitions} repetitions"
        + (" after a warm-up" if settings.sizes.warmup else "")
        + f"; gc thresholds {thresholds}{tuned}",
    ]


def _print(out: TextIO, lines: Sequence[str]) -> None:
    for line in lines:
        print(line, file=out, flush=True)
