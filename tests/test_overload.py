"""Overload: offer the runtime ten times what it can commit, on a real FileJournal.

Commands are offered at ten times what the runtime can take: ``tell_nowait`` open-loop at ten
times the commit rate measured while it runs, and ten times as many ``ask`` callers as the
mailboxes can hold, each with a short timeout. What must hold:

* callers get backpressure (``MailboxFull``) or timeouts (``MailboxTimeout``), nothing else;
* the bounds hold: no mailbox deeper than its bound, commands in flight never more than the
  mailboxes hold, and memory stays far below what queueing the offered load would take;
* every acknowledged command is in the journal after reopening, once, where it was
  acknowledged, and the runtime still answers afterwards.

How many commands are acknowledged under this overload is speed, measured (against the same
callers without a timeout) by ``python -m benchmarks.overload_goodput``, not asserted here.
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from journals import FileJournal
from runtime import Aggregate, MailboxFull, MailboxTimeout, Runtime

ENTITIES = 20
MAILBOX_BOUND = 8
OUTBOX_BOUND = 1000
OVERLOAD_FACTOR = 10
OVERLOAD_S = 1.0


@dataclass(frozen=True)
class Add:
    id: int


@dataclass(frozen=True)
class Added:
    id: int


@dataclass(frozen=True)
class Count:
    n: int = 0


def _decide(state: Count, command: Add) -> list[Added]:
    return [Added(command.id)]


def _evolve(state: Count, event: Added) -> Count:
    return Count(state.n + 1)


counter: Aggregate[Count, Add, Added] = Aggregate(
    "counter", Count(), _decide, _evolve, events={"Added": Added}
)


@dataclass
class Tally:
    acknowledged: dict[int, tuple[str, int, int]]  # id -> (entity, version, position)
    timeouts: int = 0
    tells_accepted: int = 0
    tells_refused: int = 0
    in_flight_max: int = 0
    committed_while_telling: int = 0
    depth_max: int = 0


async def _asker(
    runtime: Runtime,
    ids: itertools.count[int],
    tally: Tally,
    seed: int,
    timeout_s: float | None = 0.02,
) -> None:
    rng = random.Random(seed)
    while True:
        entity = f"c{rng.randrange(ENTITIES)}"
        command_id = next(ids)
        try:
            result = await runtime.ask(counter, entity, Add(command_id), timeout_s=timeout_s)
        except MailboxTimeout:
            tally.timeouts += 1
            # A client that retries at once, forever, turns the runtime's time into timeout
            # handling; a short jittered pause is what a well-behaved client does.
            await anyio.sleep(rng.uniform(0.0, 0.02))
            continue
        assert result.position is not None
        tally.acknowledged[command_id] = (entity, result.version, result.position)


async def _teller(runtime: Runtime, ids: itertools.count[int], tally: Tally) -> None:
    """Open-loop tells: always ten times as many offered as the runtime committed meanwhile."""
    rng = random.Random(1)
    start = runtime.statistics().commands
    offered = 0
    while True:
        committed = runtime.statistics().commands - start
        tally.committed_while_telling = committed
        target = OVERLOAD_FACTOR * (committed + ENTITIES * MAILBOX_BOUND)
        for _ in range(target - offered):
            try:
                runtime.tell_nowait(counter, f"c{rng.randrange(ENTITIES)}", Add(next(ids)))
            except MailboxFull:
                tally.tells_refused += 1
            else:
                tally.tells_accepted += 1
        offered = target
        # Refill every millisecond rather than spinning on checkpoints: a producer that keeps
        # the event loop's thread busy without pause starves the journal's writer thread of
        # the GIL (see docs/durability.md, "Overload"); this test is about backpressure.
        await anyio.sleep(0.001)


async def _sampler(
    runtime: Runtime, tally: Tally, shown: Callable[[], bool], seen: anyio.Event
) -> None:
    """Sample the bounds; set ``seen`` once ``shown()`` holds."""
    while True:
        statistics = runtime.statistics()
        tally.in_flight_max = max(tally.in_flight_max, statistics.commands_in_flight)
        tally.depth_max = max(tally.depth_max, statistics.mailbox_depth_max)
        if not seen.is_set() and shown():
            seen.set()
        await anyio.sleep(0.005)


async def _journal_holds(directory: Path, tally: Tally) -> None:
    async with FileJournal(directory) as journal:
        at: dict[int, tuple[str, int, int]] = {}
        versions: dict[str, int] = {}
        async for event in journal.read_all():
            assert event.version == versions.get(event.stream_id, 0) + 1
            versions[event.stream_id] = event.version
            assert event.data["id"] not in at, "a command was written twice"
            at[event.data["id"]] = (
                event.stream_id[len("counter-") :],
                event.version,
                event.position,
            )
    lost = {i: where for i, where in tally.acknowledged.items() if at.get(i) != where}
    assert not lost, (
        f"{len(lost)} acknowledged commands lost or moved, e.g. {list(lost.items())[:3]}"
    )


Starter = tuple[Any, ...]  # an async function and its arguments


PHASE_LIMIT_S = 30.0
"""How long a phase may go on past its time when what it must show has not happened yet: a
loaded machine (the suite beside other work) can leave the first answers late."""


async def _overload_phase(
    runtime: Runtime,
    tally: Tally,
    *starters: Starter,
    seconds: float,
    shown: Callable[[], bool],
) -> None:
    """Offer the load for ``seconds``, then on until ``shown()`` or ``PHASE_LIMIT_S``: the
    test's assertions then judge what the phase showed, however slow the machine was."""
    seen = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(_sampler, runtime, tally, shown, seen)
        for function, *arguments in starters:
            group.start_soon(function, *arguments)
        await anyio.sleep(seconds)
        with anyio.move_on_after(PHASE_LIMIT_S):
            await seen.wait()
        group.cancel_scope.cancel()


def _askers(runtime: Runtime, ids: itertools.count[int], tally: Tally) -> list[Starter]:
    count = OVERLOAD_FACTOR * ENTITIES * MAILBOX_BOUND
    return [(_asker, runtime, ids, tally, seed) for seed in range(count)]


async def _overload(directory: Path, tally: Tally, *, with_tells: bool) -> None:
    ids = itertools.count(1)
    tracemalloc.start()
    try:
        async with (
            FileJournal(directory) as journal,
            Runtime(journal, mailbox_bound=MAILBOX_BOUND, outbox_bound=OUTBOX_BOUND) as runtime,
        ):
            baseline, _ = tracemalloc.get_traced_memory()
            if with_tells:
                await _overload_phase(
                    runtime,
                    tally,
                    (_teller, runtime, ids, tally),
                    seconds=OVERLOAD_S,
                    shown=lambda: tally.tells_refused > 0 and tally.committed_while_telling > 0,
                )
            # The first answers can take most of a second on trio under tracemalloc.
            await _overload_phase(
                runtime,
                tally,
                *_askers(runtime, ids, tally),
                seconds=1.5,
                shown=lambda: tally.timeouts > 0 and bool(tally.acknowledged),
            )
            _, peak = tracemalloc.get_traced_memory()
            assert tally.timeouts > 0, "ten times the mailboxes' room in askers met no timeout"
            assert tally.depth_max <= MAILBOX_BOUND
            assert tally.in_flight_max <= ENTITIES * MAILBOX_BOUND
            # Queueing what was offered (a command, its task and its reply: over 1 KiB each)
            # would take far more; the bounds keep it to mailboxes, outbox and callers.
            assert peak - baseline < 32 * 1024 * 1024, f"{(peak - baseline) / 2**20:.1f} MiB"
            result = await runtime.ask(counter, "after", Add(next(ids)), timeout_s=5)
            assert result.version == 1
    finally:
        tracemalloc.stop()
    await _journal_holds(directory, tally)
    assert tally.acknowledged


@pytest.mark.anyio
@pytest.mark.slow
async def test_ten_times_the_mailboxes_room_in_callers_get_timeouts(tmp_path: Path) -> None:
    await _overload(tmp_path / "journal", Tally({}), with_tells=False)


@pytest.mark.anyio
@pytest.mark.slow
async def test_ten_times_the_commit_rate_in_tells_gets_backpressure(tmp_path: Path) -> None:
    tally = Tally({})
    await _overload(tmp_path / "journal", tally, with_tells=True)
    offered = tally.tells_accepted + tally.tells_refused
    assert tally.committed_while_telling > 0
    assert offered >= OVERLOAD_FACTOR * tally.committed_while_telling
    assert tally.tells_refused > 0, "tells at ten times the commit rate met no backpressure"
