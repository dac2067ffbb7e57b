"""Many concurrent callers: nothing lost or duplicated, gapless versions, pipelined commits."""

from __future__ import annotations

import anyio
import pytest

from journals import MemoryJournal
from runtime import Aggregate, MailboxFull, Runtime

from .test_runtime_bank import EVENTS, Account, Deposit, Deposited, Open, account, decide, evolve
from .test_runtime_manual_journal import ManualJournal

ENTITIES = ["hot-1", "hot-2", "hot-3"]
CALLERS_PER_ENTITY = 1000


@pytest.mark.anyio
async def test_thousands_of_callers_on_a_few_hot_entities() -> None:
    results: dict[str, list[int]] = {entity: [] for entity in ENTITIES}
    async with MemoryJournal() as journal:
        async with Runtime(journal, mailbox_bound=64) as runtime:

            async def caller(entity: str, amount: int) -> None:
                result = await runtime.ask(account, entity, Deposit(amount))
                # Answered only once durable, with everything before it durable too.
                assert await journal.stream_version(account.stream_id(entity)) >= result.version
                assert result.events == (Deposited(amount),)
                results[entity].append(result.version)

            async with anyio.create_task_group() as tg:
                for number in range(CALLERS_PER_ENTITY):
                    for entity in ENTITIES:
                        tg.start_soon(caller, entity, number + 1)
            for entity in ENTITIES:
                state = await runtime.state(account, entity)
                assert state.deposits == CALLERS_PER_ENTITY
                assert state.balance == CALLERS_PER_ENTITY * (CALLERS_PER_ENTITY + 1) // 2
            statistics = runtime.statistics()
            assert statistics.commands == len(ENTITIES) * CALLERS_PER_ENTITY
            assert statistics.activations == len(ENTITIES)
            assert statistics.commands_in_flight == 0
        for entity in ENTITIES:
            assert sorted(results[entity]) == list(range(1, CALLERS_PER_ENTITY + 1))
            stored = [e async for e in journal.read(account.stream_id(entity))]
            assert [e.version for e in stored] == list(range(1, CALLERS_PER_ENTITY + 1))
            amounts = sorted(e.data["amount"] for e in stored)
            assert amounts == list(range(1, CALLERS_PER_ENTITY + 1))
    # Pipelining: many commands share a batch (one group commit).
    assert journal.statistics().batches * 10 < len(ENTITIES) * CALLERS_PER_ENTITY


@pytest.mark.anyio
async def test_one_activation_per_entity_whatever_the_concurrency() -> None:
    kinds: list[str] = []
    async with MemoryJournal() as journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(account, "42", Open("ada"))
        async with Runtime(journal, on_lifecycle=lambda e: kinds.append(e.kind)) as runtime:
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(runtime.ask, account, "42", Deposit(1))
            assert runtime.statistics().activations == 1
            assert (await runtime.state(account, "42")).balance == 200
    assert kinds == ["recovered"]


@pytest.mark.anyio
async def test_the_mailbox_bound_holds_under_load() -> None:
    depths: list[int] = []
    waiting: list[int] = []
    async with MemoryJournal() as journal, Runtime(journal, mailbox_bound=8) as runtime:

        async def caller() -> None:
            await runtime.ask(account, "42", Deposit(1))
            statistics = runtime.statistics()
            depths.extend([statistics.commands_in_flight, statistics.mailbox_depth_max])
            waiting.append(statistics.callers_waiting_for_room)

        async with anyio.create_task_group() as tg:
            for _ in range(300):
                tg.start_soon(caller)
        assert (await runtime.state(account, "42")).deposits == 300
        # Idle again, the actor dropped the objects it needed only while callers waited.
        assert runtime._actors["account-42"].waiting is None
    assert max(depths) <= 8
    assert max(waiting) > 0  # the other callers waited for room, outside the mailbox


@pytest.mark.anyio
async def test_tells_from_one_task_are_decided_in_order() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal, mailbox_bound=4) as runtime:
            for amount in range(1, 101):
                await runtime.tell(account, "42", Deposit(amount))
            for amount in range(101, 121):
                runtime.tell_nowait(account, "7", Deposit(amount))
        # Leaving the runtime delivered and finished every accepted command.
        amounts = [e.data["amount"] async for e in journal.read("account-42")]
        assert amounts == list(range(1, 101))
        amounts = [e.data["amount"] async for e in journal.read("account-7")]
        assert amounts == list(range(101, 121))


@pytest.mark.anyio
async def test_tell_nowait_refuses_when_the_mailbox_or_outbox_is_full() -> None:
    async with MemoryJournal() as journal, Runtime(journal, outbox_bound=3) as runtime:
        for amount in range(3):
            runtime.tell_nowait(account, "42", Deposit(amount))
        with pytest.raises(MailboxFull, match="tell_nowait queue is full"):
            runtime.tell_nowait(account, "42", Deposit(99))
    held = ManualJournal()
    async with Runtime(held, mailbox_bound=2) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(runtime.ask, account, "42", Open("ada"))
        tg.start_soon(runtime.ask, account, "42", Deposit(2))
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxFull, match=r"mailbox of 'account-42' is full \(2 "):
            runtime.tell_nowait(account, "42", Deposit(3))
        held.commit()
    assert held.statistics().events == 2


@pytest.mark.anyio
async def test_two_aggregates_with_one_name_are_refused() -> None:
    twin = Aggregate("account", Account(), decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        with pytest.raises(ValueError, match="aggregate names must be unique"):
            await runtime.ask(twin, "42", Deposit(1))
