"""Timed rounds of concurrent callers, and the figures they give.

A round starts N caller tasks and releases them together. Each caller repeats its operation.
The measured window opens when every caller has completed its first operation (so the
herd of first calls, which at 10,000 callers takes a while, is not part of it); operations
completed inside the window count, and their latencies are the ones reported (see
``Window``). Nothing is extrapolated: a rate is the operations completed in a measured
window divided by the time from its opening to its last completion.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from journals import Journal

from ._context import BenchContext
from ._results import Figure
from ._stats import PERCENTILES, latency_percentiles_ms, percentile_label, rate_per_s, summarize

Operation = Callable[[int], Awaitable[Any]]
"""``operation(caller)`` performs one measured operation for caller number ``caller``."""


@dataclass(frozen=True, slots=True)
class Round:
    """What one round measured: its window and the latency of each operation completed in it."""

    elapsed_ns: int
    latencies_ns: Sequence[int]
    events_per_fsync: float | None = None

    @property
    def operations(self) -> int:
        return len(self.latencies_ns)

    @property
    def rate_per_s(self) -> float:
        return rate_per_s(self.operations, self.elapsed_ns)


@dataclass(slots=True)
class Window:
    """The measured window of one round, shared by its callers (one event loop or a lock).

    The window opens at the completion that ends the ramp (every caller has completed one
    operation) and measures from there to the last completion it holds, so that a rate is
    completions over the time they took, whatever the batch size. It lasts ``duration_ns``,
    and at least twice the ramp so that slow configurations still span several batches;
    if nothing completes in it, it stays open until the first completion.

    Invariant: ``opened_ns`` and ``closes_ns`` are infinite until the ramp has ended.
    """

    callers: int
    duration_ns: int
    released_ns: int = 0
    started: int = 0
    opened_ns: float = math.inf
    closes_ns: float = math.inf
    last_ns: float = math.inf
    latencies_ns: list[int] = field(default_factory=list)

    def completed(self, began: int, done: int, first: bool) -> None:
        """Record one completed operation (``first``: the caller's first one)."""
        if first:
            self.started += 1
            if self.started == self.callers:
                ramp = done - self.released_ns
                self.opened_ns = done
                self.closes_ns = done + max(self.duration_ns, ramp)
        elif self.opened_ns < done <= self.closes_ns or (
            done > self.closes_ns and not self.latencies_ns
        ):
            self.latencies_ns.append(done - began)
            self.last_ns = done if not math.isfinite(self.last_ns) else max(self.last_ns, done)
            # A window that would close empty stays open until its first completion.
            self.closes_ns = max(self.closes_ns, done)

    def result(self) -> Round:
        elapsed = self.last_ns - self.opened_ns
        if not self.latencies_ns or not math.isfinite(elapsed) or elapsed <= 0:
            raise RuntimeError("a round ended before every caller completed an operation")
        return Round(int(elapsed), self.latencies_ns)


async def _caller(operation: Operation, caller: int, start: anyio.Event, window: Window) -> None:
    clock = time.perf_counter_ns
    await start.wait()
    first = True
    while True:
        began = clock()
        if began >= window.closes_ns:
            return
        await operation(caller)
        window.completed(began, clock(), first)
        first = False


async def timed_round(callers: int, round_s: float, operation: Operation) -> Round:
    """Run ``operation`` from ``callers`` concurrent tasks; measure a window of ``round_s``."""
    window = Window(callers, int(round_s * 1e9))
    start = anyio.Event()
    async with anyio.create_task_group() as group:
        for caller in range(callers):
            group.start_soon(_caller, operation, caller, start, window)
        # Let every caller reach the start line before releasing them.
        await anyio.lowlevel.checkpoint()
        window.released_ns = time.perf_counter_ns()
        start.set()
    return window.result()


async def measure_point(
    context: BenchContext,
    journal: Journal,
    callers: int,
    operation: Operation,
    *,
    warm_up: bool,
    label: str,
) -> list[Round]:
    """The rounds of one point of a sweep, each with its events per fsync.

    ``warm_up`` adds a first round that is run and discarded: the first point of a scenario
    warms its code paths; later points need none, since each window already starts only
    once every caller is under way.
    """
    sizes = context.sizes
    warm = warm_up and sizes.warmup
    total = sizes.repetitions + (1 if warm else 0)
    rounds: list[Round] = []
    for number in range(total):
        context.progress.step(f"{label}, round {number + 1}/{total}")
        before = journal.statistics()
        measured = await timed_round(callers, sizes.round_s, operation)
        if not (warm and number == 0):
            rounds.append(with_batching(measured, before, journal.statistics()))
    return rounds


def round_figures(
    scenario: str,
    rounds: Sequence[Round],
    at: Mapping[str, Any],
    *,
    rate_name: str,
    rate_label: str,
    latency_label: str,
    durable: bool,
) -> list[Figure]:
    """Rate, events per fsync (when known) and latency percentiles over several rounds."""
    figures = [
        Figure(
            scenario,
            rate_name,
            rate_label,
            "/s",
            summarize([r.rate_per_s for r in rounds]),
            at,
            durable,
        ),
    ]
    batching = [r.events_per_fsync for r in rounds if r.events_per_fsync is not None]
    if batching and durable:
        figures.append(
            Figure(
                scenario,
                "events_per_fsync",
                "events per fsync",
                "events",
                summarize(batching),
                at,
                durable,
            )
        )
    per_round = [latency_percentiles_ms(r.latencies_ns) for r in rounds]
    for p in PERCENTILES:
        label = percentile_label(p)
        figures.append(
            Figure(
                scenario,
                f"latency_ms_{label}",
                f"{latency_label} {label}",
                "ms",
                summarize([values[p] for values in per_round]),
                at,
                durable,
                higher_is_better=False,
            )
        )
    return figures


def with_batching(round_: Round, before: Any, after: Any) -> Round:
    """``round_`` with its events per fsync, from journal statistics taken around it."""
    fsyncs = after.fsyncs - before.fsyncs
    events = after.appended_events - before.appended_events
    return Round(round_.elapsed_ns, round_.latencies_ns, events / fsyncs if fsyncs else None)
