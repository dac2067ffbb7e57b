"""Timed rounds of concurrent callers, and the figures they give.

A round starts N caller tasks, releases them together, and lets each repeat its operation
until the round's time is up; the round ends when the last operation in flight completes.
Rates divide the operations completed by that whole elapsed time, so nothing is
extrapolated: slow and fast configurations simply complete more or fewer operations.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from ._results import Figure
from ._stats import PERCENTILES, latency_percentiles_ms, percentile_label, rate_per_s, summarize

Operation = Callable[[int], Awaitable[Any]]
"""``operation(caller)`` performs one measured operation for caller number ``caller``."""


@dataclass(frozen=True, slots=True)
class Round:
    """What one round measured: its elapsed time and every operation's latency."""

    elapsed_ns: int
    latencies_ns: Sequence[int]
    events_per_fsync: float | None = None

    @property
    def operations(self) -> int:
        return len(self.latencies_ns)

    @property
    def rate_per_s(self) -> float:
        return rate_per_s(self.operations, self.elapsed_ns)


async def _caller(
    operation: Operation,
    caller: int,
    start: anyio.Event,
    stop_at: list[int],
    latencies: list[int],
) -> None:
    clock = time.perf_counter_ns
    await start.wait()
    deadline = stop_at[0]
    while True:
        began = clock()
        if began >= deadline:
            return
        await operation(caller)
        latencies.append(clock() - began)


async def timed_round(callers: int, round_s: float, operation: Operation) -> Round:
    """Run ``operation`` from ``callers`` concurrent tasks for about ``round_s`` seconds.

    Every caller completes at least one operation, even when the round is shorter than one
    operation takes.
    """
    latencies: list[int] = []
    start = anyio.Event()
    stop_at = [0]
    async with anyio.create_task_group() as group:
        for caller in range(callers):
            group.start_soon(_caller, operation, caller, start, stop_at, latencies)
        # Let every caller reach the start line before the clock starts.
        await anyio.lowlevel.checkpoint()
        began = time.perf_counter_ns()
        stop_at[0] = began + int(round_s * 1e9)
        start.set()
    elapsed = time.perf_counter_ns() - began
    if not latencies:
        raise RuntimeError("a round completed no operation; raise its duration")
    return Round(elapsed, latencies)


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
