"""Random interleavings of commands, group commits, crashes and a journal failure.

Each run drives three entities through a seeded random schedule on a journal whose commits
the test performs, then checks what must hold whatever the schedule: every answer came only
after its events were durable, every acknowledged event is in the journal exactly where its
answer said, streams are gapless, and the actors' states equal a fold of what is durable.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from journals import JournalFailed
from runtime import CommandRejected, CommandResult, RestartPolicy, Runtime
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, Explode, Noop, Open, Withdraw, account, evolve
from .test_runtime_manual_journal import ManualJournal

ENTITIES = ["a", "b", "c"]


def random_command(generator: random.Random) -> Any:
    roll = generator.random()
    if roll < 0.55:
        return Deposit(generator.randrange(1, 20))
    if roll < 0.85:
        return Withdraw(generator.randrange(1, 40))
    if roll < 0.95:
        return Noop()
    return Explode("random crash")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.anyio
async def test_random_schedules_keep_the_guarantees(seed: int) -> None:
    generator = random.Random(seed)
    journal = ManualJournal()
    acknowledged: list[tuple[str, CommandResult[Any]]] = []
    fail_at = generator.randrange(40, 120) if seed % 2 else None
    policy = RestartPolicy(max_restarts=1000, backoff_initial_s=0)

    async def caller(entity: str, command: Any) -> None:
        try:
            result = await runtime.ask(account, entity, command)
        except (CommandRejected, RuntimeError, JournalFailed):
            return
        durable = await journal.stream_version(account.stream_id(entity))
        assert durable >= result.version, "answered before its events were durable"
        acknowledged.append((entity, result))

    clock = ManualClock(autojump=True)
    async with Runtime(journal, restart_policy=policy, clock=clock) as runtime:
        async with anyio.create_task_group() as tg:
            for entity in ENTITIES:
                tg.start_soon(caller, entity, Open(entity))
            for step in range(160):
                if step == fail_at:
                    journal.fail(OSError(5, "fsync failed"))
                action = generator.random()
                if action < 0.6:
                    tg.start_soon(caller, generator.choice(ENTITIES), random_command(generator))
                elif action < 0.9 and (fail_at is None or step < fail_at):
                    journal.commit(generator.randrange(0, journal.pending + 1))
                # One checkpoint first lets finished callers end; otherwise anyio's asyncio
                # wait_all_tasks_blocked polls every 0.1 s while they wind down.
                await anyio.lowlevel.checkpoint()
                await anyio.wait_all_tasks_blocked()
            journal.commit()
        live = {entity: await runtime.state(account, entity) for entity in ENTITIES}

    assert len(acknowledged) >= 10  # the schedule really ran commands through
    for entity in ENTITIES:
        stored = journal.streams.get(account.stream_id(entity), [])
        assert [event.version for event in stored] == list(range(1, len(stored) + 1))
        state = account.initial
        for event in stored:
            state = evolve(state, account.decode_event(event.type, event.data))
        assert live[entity] == state, f"live state of {entity} differs from its journal"
    for entity, result in acknowledged:
        stored = journal.streams[account.stream_id(entity)]
        if result.events:
            event = stored[result.version - 1]
            assert event.position == result.position
            assert account.decode_event(event.type, event.data) == result.events[-1]
