"""Driving concurrent callers through measured windows, and the figures they give."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from journals import Journal, JournalStatistics

from ._context import BenchContext
from ._results import Figure
from ._stats import PERCENTILES, latency_percentiles_ms, percentile_label, summarize
from ._windows import Round, Windows

Operation = Callable[[int], Awaitable[Any]]
"""``operation(caller)`` performs one measured operation for caller number ``caller``."""

RAMP_OPERATIONS_MAX = 10_000
"""How many operations one caller may complete before every caller has completed its first.

Callers take turns while their operations wait (for a commit, for room), so a caller gets
only a few operations ahead of the slowest one. One that gets this far ahead has operations
that never wait, such as commands that cause no event: it never lets the others run, the
windows never open, and the run would spin for ever."""


class CallersStarved(RuntimeError):
    """One caller's operations completed without ever letting the other callers run."""


class NotOneEventEach(RuntimeError):
    """The commands measured did not cause one event each, as the figures assume."""


async def _caller(operation: Operation, caller: int, start: anyio.Event, windows: Windows) -> None:
    clock = time.perf_counter_ns
    await start.wait()
    began = clock()
    await operation(caller)
    windows.completed(began, clock(), True)
    # The ramp, until every caller has completed its first operation (not measured).
    ahead = 0
    while windows.started < windows.callers:
        began = clock()
        await operation(caller)
        windows.completed(began, clock(), False)
        ahead += 1
        if ahead >= RAMP_OPERATIONS_MAX and windows.started < windows.callers:
            raise CallersStarved(
                f"caller {caller} completed {ahead} operations after its first while "
                f"{windows.callers - windows.started} of the {windows.callers} callers had not "
                f"completed their first: its operations complete without waiting, so the others "
                f"never run (a command that causes no event is answered at once); every measured "
                f"operation must wait for the journal"
            )
    # Every completion is recorded; the common case (inside the current window) inline, as
    # the harness's own work per operation is measured along with the runtime's.
    record_done = windows.done_ns.append
    record_latency = windows.latency_ns.append
    while True:
        began = clock()
        if began >= windows.closes_ns:
            windows.closed()  # The end's sample, before the operations in flight drain.
            return
        await operation(caller)
        done = clock()
        if windows.opened_ns < done <= windows.next_edge_ns:
            record_done(done)
            record_latency(done - began)
        else:
            windows.completed(began, done, False)


async def run_windows(windows: Windows, operation: Operation) -> None:
    """Release ``windows.callers`` tasks together and run them until the last window closes."""
    start = anyio.Event()
    async with anyio.create_task_group() as group:
        for caller in range(windows.callers):
            group.start_soon(_caller, operation, caller, start, windows)
        # Let every caller reach the start line before releasing them.
        await anyio.lowlevel.checkpoint()
        windows.released_ns = time.perf_counter_ns()
        start.set()
    windows.finish()


def events_per_fsync(before: JournalStatistics, after: JournalStatistics) -> float | None:
    """Events appended per fsync of a batch between two journal statistics (None without
    one): the fsyncs of snapshot saves and segment rolls are not group commits."""
    fsyncs = after.batch_fsyncs - before.batch_fsyncs
    events = after.appended_events - before.appended_events
    return events / fsyncs if fsyncs else None


async def measure_point(
    context: BenchContext,
    journal: Journal,
    callers: int,
    operation: Operation,
    *,
    warm_up: bool,
    label: str,
    one_event_each: bool = False,
) -> list[Round]:
    """The windows of one point of a sweep, each with its events per fsync.

    ``warm_up`` measures one more window first and discards it: the first point of a
    scenario warms its code paths; later points need none, since windows only begin once
    every caller is under way. ``one_event_each``: the operations are commands that must
    cause one event each (``check_events_per_command``).
    """
    warm = warm_up and context.sizes.warmup
    windows = point_windows(context, callers, journal.statistics, warm=warm)
    context.progress.step(f"{label}, {windows.count} windows")
    await run_windows(windows, operation)
    if one_event_each:
        check_events_per_command(windows)
    rounds = windows.rounds(events_per_fsync)
    return rounds[1:] if warm and len(rounds) > 1 else rounds


def check_events_per_command(windows: Windows) -> None:
    """Refuse figures of commands that did not cause one event each (``NotOneEventEach``).

    A workload is checked on its first commands before the run (``check_one_event_each`` of
    ``_workload``); this checks the commands the windows measured, from the journal's counts
    of appends and events across them, without any work per command. A command that causes
    events appends them at once, so events and appends are equal exactly when every command
    that appended caused one event, however few commands the windows held. The appends and
    the commands completed differ by the commands in flight at the windows' edges, at most one
    per caller each way, so a difference beyond twice the callers means commands that caused
    no event.
    """
    first, last = windows.probes[0], windows.probes[-1]
    if first is None or last is None:
        return
    events = last.appended_events - first.appended_events
    appends = last.appends - first.appends
    commands = len(windows.done_ns)
    if events == appends and abs(appends - commands) <= 2 * windows.callers:
        return
    several = events != appends or appends > commands
    raise NotOneEventEach(
        f"the measured windows completed {commands} commands and the journal took "
        f"{events} events in them: the workload's later commands cause "
        f"{'several events' if several else 'no event'} (the events came in {appends} "
        f"appends, one per command that caused any), and the benchmarks time one-event "
        f"commands (only its first commands are checked before the run); "
        f"commands(entity_id, index) must give, for every index, a command that causes "
        f"exactly one event"
    )


def point_windows(
    context: BenchContext, callers: int, probe: Callable[[], Any], *, warm: bool
) -> Windows:
    """The windows of one point: the suite's repetitions (one more to warm up, when ``warm``),
    each sampling ``probe`` and the event loop's CPU time."""
    sizes = context.sizes
    return Windows(
        callers,
        sizes.repetitions + (1 if warm else 0),
        int(sizes.round_s * 1e9),
        probe=probe,
        cpu_clock=time.thread_time_ns,
    )


def round_figures(
    scenario: str,
    rounds: Sequence[Round],
    at: Mapping[str, Any],
    *,
    rate_name: str,
    rate_label: str,
    latency_label: str,
    durable: bool,
    operation: str = "operation",
) -> list[Figure]:
    """Rate, events per fsync and the event loop's CPU time per ``operation`` (when known),
    and latency percentiles over several rounds."""
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
    cpu = [r.loop_cpu_ns_per_op / 1000 for r in rounds if r.loop_cpu_ns_per_op is not None]
    if cpu:
        figures.append(
            Figure(
                scenario,
                "loop_cpu_us",
                f"event-loop CPU per {operation}",
                "us",
                summarize(cpu),
                at,
                durable,
                higher_is_better=False,
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


def command_figures(
    scenario: str, rounds: Sequence[Round], at: Mapping[str, Any], *, durable: bool
) -> list[Figure]:
    """``round_figures`` of durable one-event commands: the runtime's scenarios and the bare
    loop they are read against, under one figure name so that their ratio can pair them."""
    return round_figures(
        scenario,
        rounds,
        at,
        rate_name="commands_per_s",
        rate_label="durable one-event commands/s",
        latency_label="command latency",
        durable=durable,
        operation="command",
    )
