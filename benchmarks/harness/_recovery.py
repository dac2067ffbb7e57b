"""The ``recovery`` scenario: reopening a large journal and bringing entities back by replay.

The journal is filled first (straight appends of the events the workload's commands cause):
one long stream, the same long stream once more with a snapshot near its end, many short
streams each written whole, the same number of short streams twice more written one event
per append with the streams taking turns (a few at a time, then all of them: as commands to
entities active at the same time write them), and filler streams up to the reopen size. Each
round then reopens the journal from its files (timed), starts a fresh runtime on it, and
times how long the runtime takes to bring back the long stream without a snapshot, the one
with a snapshot (snapshot plus tail), and every short stream of each shape (from concurrent
callers, as after a restart under load). The
snapshotted stream is brought back by a runtime that takes snapshots (the default runtime does
not look for snapshots unless the aggregate takes them).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from journals import FileJournal, NewEvent
from runtime import Runtime

from ._activation import CALLERS
from ._context import BenchContext
from ._index_memory import index_bytes_per_event
from ._results import Figure, ScenarioResult
from ._stats import rate_per_s, summarize
from ._workload import history
from ._writing import write_interleaved, write_streams

NAME = "recovery"
TITLE = "Recovery: journal reopen, and replay of one long stream and many short ones"
LONG, SNAPSHOTTED, SHORT, FILLER = "long", "long-snapshotted", "short", "filler"
INTERLEAVED = "interleaved"


def _interleaved_groups(sizes: Any) -> tuple[int, ...]:
    """How many short streams take turns in each interleaved shape: a few, then all."""
    return (sizes.interleaved_group, sizes.short_streams)


def _interleaved_ids(sizes: Any, group: int) -> list[str]:
    return [f"{INTERLEAVED}-{group}-{index}" for index in range(sizes.short_streams)]


async def _build(context: BenchContext, directory: Path) -> dict[str, int]:
    """Fill the journal; answer the number of events of each kind of stream."""
    sizes = context.sizes
    long_events = history(context.workload, LONG, sizes.long_stream_events)
    tail = max(sizes.snapshot_every // 2, 1)
    snapshotted = history(context.workload, SNAPSHOTTED, sizes.long_stream_events + tail)
    short = long_events[: sizes.short_stream_events]
    streams: list[tuple[str, list[NewEvent]]] = [
        (LONG, long_events),
        (SNAPSHOTTED, snapshotted[:-tail]),
    ]
    streams += [(f"{SHORT}-{index}", short) for index in range(sizes.short_streams)]
    groups = _interleaved_groups(sizes)
    written = 2 * sizes.long_stream_events
    written += (1 + len(groups)) * sizes.short_streams * sizes.short_stream_events
    filler_chunk = long_events[:1_000]
    index = 0
    # Filler up to the reopen size, counting the snapshotted stream's tail appended last.
    while written + tail < sizes.reopen_events:
        events = filler_chunk[: sizes.reopen_events - tail - written]
        streams.append((f"{FILLER}-{index}", events))
        written += len(events)
        index += 1
    aggregate = context.workload.aggregate
    async with FileJournal(directory, durable=context.durable) as journal:
        context.progress.step(f"writing {written:,} events")
        await write_streams(journal, aggregate, streams)
        for group in groups:
            ids = _interleaved_ids(sizes, group)
            await write_interleaved(journal, aggregate, ids, short, group)
        # A snapshot written the runtime's own way: passivating the entity stores one.
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as runtime:
            await runtime.state(aggregate, SNAPSHOTTED)
            # Activating an entity without history evicts the one above (max_live_actors=1).
            await runtime.state(aggregate, "evictor")
            snapshots_skipped = runtime.statistics().snapshots_skipped
        if sizes.warmup:
            # Warm-up: the replay path runs once before any round is timed.
            async with Runtime(journal) as runtime:
                for index in range(min(sizes.short_streams, 100)):
                    await runtime.state(aggregate, f"{SHORT}-{index}")
        if await journal.load_snapshot(aggregate.stream_id(LONG)) is not None:
            raise RuntimeError("the long stream has a snapshot; it must be replayed in full")
        stream_id = aggregate.stream_id(SNAPSHOTTED)
        snapshot = await journal.load_snapshot(stream_id)
        if snapshot is None or snapshot.version != sizes.long_stream_events:
            why = (
                f"; the runtime could not take it (the state of {aggregate.name!r} cannot be "
                f"stored as JSON and read back as it was: the log above says why): give the "
                f"Aggregate an encode_state and a decode_state, as docs/runtime.md shows"
                if snapshots_skipped
                else ""
            )
            raise RuntimeError(
                f"passivating {stream_id!r} stored no snapshot at version "
                f"{sizes.long_stream_events} ({snapshot!r}); the with-snapshot figures would "
                f"not mean what they say{why}"
            )
        await journal.append(
            stream_id, snapshotted[-tail:], expected_version=sizes.long_stream_events
        )
        written += tail
    return {"events": written, "tail": tail}


async def _timed(operation: Callable[[], Awaitable[Any]]) -> int:
    began = time.perf_counter_ns()
    await operation()
    return time.perf_counter_ns() - began


async def _round(context: BenchContext, directory: Path) -> dict[str, float]:
    sizes = context.sizes
    aggregate = context.workload.aggregate
    journal = FileJournal(directory, durable=context.durable)
    began = time.perf_counter_ns()
    async with journal:
        reopen_ns = time.perf_counter_ns() - began
        index_bytes = index_bytes_per_event(journal)
        # The runtime as configured by default: it looks for snapshots only when the
        # aggregate takes them (snapshot_every); the long and short streams have none.
        async with Runtime(journal, max_live_actors=None) as runtime:
            long_ns = await _timed(lambda: runtime.state(aggregate, LONG))
            short_ids = [f"{SHORT}-{index}" for index in range(sizes.short_streams)]
            short_ns = await _timed(lambda: _recover_all(runtime, aggregate, short_ids))
            interleaved_ns = {}
            for group in _interleaved_groups(sizes):
                ids = _interleaved_ids(sizes, group)
                interleaved_ns[group] = await _timed(
                    functools.partial(_recover_all, runtime, aggregate, ids)
                )
        # A runtime that takes snapshots (on passivation) also uses them when it activates.
        async with Runtime(journal, snapshot_on_passivation=True) as runtime:
            snapshot_ns = await _timed(lambda: runtime.state(aggregate, SNAPSHOTTED))
            statistics = runtime.statistics()
        if statistics.activations != 1 or statistics.snapshots != 0:
            raise RuntimeError(
                f"the snapshot round should activate one entity and store no snapshot, not "
                f"{statistics.activations} and {statistics.snapshots}"
            )
    short_events = sizes.short_streams * sizes.short_stream_events
    interleaved = {
        f"interleaved_{group}_per_s": rate_per_s(short_events, elapsed_ns)
        for group, elapsed_ns in interleaved_ns.items()
    }
    return {
        **interleaved,
        "reopen_s": reopen_ns / 1e9,
        "index_bytes_per_event": index_bytes,
        "long_per_s": rate_per_s(sizes.long_stream_events, long_ns),
        "long_ms": long_ns / 1e6,
        "snapshot_ms": snapshot_ns / 1e6,
        "short_per_s": rate_per_s(short_events, short_ns),
        "short_ms": short_ns / 1e6,
    }


async def _recover_all(runtime: Runtime, aggregate: Any, entity_ids: list[str]) -> None:
    callers = min(CALLERS, len(entity_ids))

    async def recover(share: list[str]) -> None:
        for entity_id in share:
            await runtime.state(aggregate, entity_id)

    async with anyio.create_task_group() as group:
        for caller in range(callers):
            group.start_soon(recover, entity_ids[caller::callers])


async def _measure(context: BenchContext, directory: Path) -> tuple[list[Figure], int]:
    sizes = context.sizes
    built = await _build(context, directory)
    rounds = []
    for number in range(sizes.repetitions):
        context.progress.step(f"reopen and replay, round {number + 1}/{sizes.repetitions}")
        rounds.append(await _round(context, directory))

    def summary(key: str) -> Any:
        return summarize([measured[key] for measured in rounds])

    long_at = {"streams": "one long", "snapshots": "no"}
    short_at = {"streams": "many short", "snapshots": "no"}
    snapshot_at = {"streams": "one long", "snapshots": "yes"}
    durable = context.durable
    figures = [
        Figure(
            NAME,
            "reopen_s",
            "journal reopen",
            "s",
            summary("reopen_s"),
            {"events": built["events"]},
            durable,
            higher_is_better=False,
        ),
        Figure(
            NAME,
            "index_bytes_per_event",
            "index memory per event after reopen",
            "bytes",
            summary("index_bytes_per_event"),
            {"events": built["events"]},
            durable,
            higher_is_better=False,
        ),
        Figure(
            NAME,
            "replay_events_per_s",
            "replay events/s",
            "/s",
            summary("long_per_s"),
            long_at,
            durable,
        ),
        Figure(
            NAME,
            "recovery_ms",
            "time to bring the entity back",
            "ms",
            summary("long_ms"),
            long_at,
            durable,
            higher_is_better=False,
        ),
        Figure(
            NAME,
            "recovery_ms",
            "time to bring the entity back",
            "ms",
            summary("snapshot_ms"),
            snapshot_at,
            durable,
            higher_is_better=False,
        ),
        Figure(
            NAME,
            "replay_events_per_s",
            "replay events/s",
            "/s",
            summary("short_per_s"),
            short_at,
            durable,
        ),
        Figure(
            NAME,
            "recovery_ms",
            "time to bring all entities back",
            "ms",
            summary("short_ms"),
            short_at,
            durable,
            higher_is_better=False,
        ),
    ]
    figures.extend(
        Figure(
            NAME,
            "replay_events_per_s",
            "replay events/s",
            "/s",
            summary(f"interleaved_{group}_per_s"),
            {"streams": f"interleaved by {group}", "snapshots": "no"},
            durable,
        )
        for group in _interleaved_groups(sizes)
    )
    return figures, built["tail"]


def run(context: BenchContext) -> ScenarioResult:
    sizes = context.sizes
    (figures, tail), elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        notes=(
            f"the snapshotted stream has {sizes.long_stream_events:,} events in its snapshot "
            f"and a tail of {tail:,} events replayed after it",
            f"many short streams are brought back by {CALLERS} concurrent callers",
            f"interleaved: {sizes.short_streams:,} more short streams of each shape, written "
            f"one event per append with the given number of streams taking turns",
        ),
        settings={
            "long_stream_events": sizes.long_stream_events,
            "short_streams": sizes.short_streams,
            "short_stream_events": sizes.short_stream_events,
            "interleaved_streams": list(_interleaved_groups(sizes)),
            "reopen_events": sizes.reopen_events,
            "snapshot_tail_events": tail,
            "workload": context.workload.name,
        },
    )
