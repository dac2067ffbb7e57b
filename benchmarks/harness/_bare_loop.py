"""The ``bare-loop`` scenario: the runtime's commands without the runtime, as its baseline.

What a hand-written durable hot path does with the same aggregate and commands, on the same
disk and in the same run: states in a dict; each command decided and evolved in its caller's
task, its events encoded with orjson and framed (length, CRC-32 computed as the journal
computes it) into the batch being filled; one task writes each batch with one write and one
fdatasync in a worker thread, then answers all of its callers at once. It has no journal
index, no mailbox or bound, no supervision, snapshots, reads or cancellation handling, and
answers a whole batch through one shared future.

The runtime's ``hot-actor`` and ``many-actors`` figures are shown as a ratio to it (``x the
bare loop``): what the runtime keeps of a bare loop's speed. Both are measured on the same
machine a moment apart, so what slows the machine for both cancels out of the ratio.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson

from journals._codec import crc32  # The journal's CRC-32: the same work, the same library.

from ._context import BenchContext
from ._drive import command_figures, point_windows, run_windows
from ._results import Figure, ScenarioResult
from ._workload import Workload

NAME = "bare-loop"
TITLE = "Bare loop: the same commands, decided in a dict and group-committed by hand"

HOT_ENTITY = "hot"
MANY_CALLERS = 1_000
"""The many-actors point compared (the suite's 1,000 callers; the largest point below it)."""

_HEADER = struct.Struct("<II")


class BareLoop:
    """The bare hot path. ``ask`` answers once the command's events are written (and synced).

    Invariant: ``frames`` are the events of the callers waiting on ``batch``; they are
    written together, in the order they were decided.
    """

    def __init__(self, fd: int, workload: Workload, *, durable: bool) -> None:
        self._fd = fd
        self._aggregate = workload.aggregate
        self._commands = workload.commands
        self._durable = durable
        self._states: dict[str, tuple[Any, int]] = {}
        self._sent: dict[str, int] = {}
        self._frames: list[bytes] = []
        self._batch: Any = None
        self._work = anyio.Event()
        try:
            self._create: Callable[[], Any] = asyncio.get_running_loop().create_future
            self._futures = True
        except RuntimeError:  # trio: one event per batch
            self._create = anyio.Event
            self._futures = False
        self.fsyncs = 0
        self.events = 0

    def ask(self, entity_id: str) -> Awaitable[Any]:
        """Decide the entity's next command now; answer what to await for its durability."""
        aggregate = self._aggregate
        index = self._sent.get(entity_id, 0)
        self._sent[entity_id] = index + 1
        state, version = self._states.get(entity_id, (aggregate.initial, 0))
        events = aggregate.decide(state, self._commands(entity_id, index))
        for event in events:
            state = aggregate.evolve(state, event)
        types, data = aggregate.event_columns(events)
        frames = self._frames
        for event_type, value in zip(types, data, strict=True):
            version += 1
            payload = orjson.dumps((entity_id, version, event_type, value))
            frames.append(_HEADER.pack(len(payload), crc32(payload)) + payload)
        self._states[entity_id] = (state, version)
        batch = self._batch
        if batch is None:
            batch = self._batch = self._create()
            self._work.set()
        waited: Awaitable[Any] = batch if self._futures else batch.wait()
        return waited

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if self._durable:
            os.fdatasync(self._fd)

    async def commit(self) -> None:
        """Write batch after batch until cancelled."""
        while True:
            await self._work.wait()
            self._work = anyio.Event()
            frames, batch = self._frames, self._batch
            self._frames, self._batch = [], None
            await anyio.to_thread.run_sync(self._write, b"".join(frames))
            self.fsyncs += 1
            self.events += len(frames)
            if self._futures:
                # Callers await the shared future itself, so a caller cancelled while it
                # waits (the run being stopped) cancels it, and with it the whole batch:
                # there is nobody left to answer, and the committer carries on.
                if not batch.done():
                    batch.set_result(None)
            else:
                batch.set()

    def statistics(self) -> tuple[int, int]:
        return self.fsyncs, self.events


def _events_per_fsync(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    fsyncs = after[0] - before[0]
    return (after[1] - before[1]) / fsyncs if fsyncs else None


async def _point(
    context: BenchContext, directory: Path, entity_ids: list[str], callers: int, label: str
) -> list[Any]:
    fd = await anyio.to_thread.run_sync(_open, directory / label)
    try:
        bare = BareLoop(fd, context.workload, durable=context.durable)
        shares = [entity_ids[caller::callers] or entity_ids for caller in range(callers)]
        positions = [0] * callers

        def one_command(caller: int) -> Awaitable[Any]:
            share = shares[caller]
            position = positions[caller]
            positions[caller] = position + 1
            return bare.ask(share[position % len(share)])

        warm = context.sizes.warmup
        windows = point_windows(context, callers, bare.statistics, warm=warm)
        context.progress.step(f"{label}, {windows.count} windows")
        async with anyio.create_task_group() as group:
            group.start_soon(bare.commit)
            await run_windows(windows, one_command)
            group.cancel_scope.cancel()
        rounds = windows.rounds(_events_per_fsync)
        return rounds[1:] if warm and len(rounds) > 1 else rounds
    finally:
        await anyio.to_thread.run_sync(os.close, fd)


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


async def _measure(context: BenchContext, directory: Path) -> list[Figure]:
    sizes = context.sizes
    callers = max((c for c in sizes.callers if c <= MANY_CALLERS), default=min(sizes.callers))
    # (label, entities, callers, the point's parameters: those of the runtime's figure)
    points = [
        ("hot", [HOT_ENTITY], sizes.hot_in_flight,
         {"shape": "hot-actor", "in_flight": sizes.hot_in_flight}),
        ("many", [f"entity-{index}" for index in range(sizes.entities)], callers,
         {"shape": "many-actors", "callers": callers}),
    ]  # fmt: skip
    figures: list[Figure] = []
    for label, entity_ids, point_callers, parameters in points:
        rounds = await _point(context, directory, entity_ids, point_callers, label)
        figures += command_figures(NAME, rounds, parameters, durable=context.durable)
    return figures


def run(context: BenchContext) -> ScenarioResult:
    figures, elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        settings={
            "hot_in_flight": context.sizes.hot_in_flight,
            "entities": context.sizes.entities,
            "round_s": context.sizes.round_s,
            "workload": context.workload.name,
        },
        notes=(
            "a baseline, not a journal: no index, mailbox, supervision or cancellation "
            "handling; the runtime's figures are read against it",
        ),
    )
