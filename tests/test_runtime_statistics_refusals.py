"""What ``statistics()`` counts of the calls refused under load: those whose ``timeout_s``
passed before they were accepted (``mailbox_timeouts``) and the ``tell_nowait`` calls refused
for a full mailbox or a full outbox. Each refusal is counted once, and nothing else is: not a
caller cancelled while it waited, nor one refused because the runtime shut down."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import MailboxFull, MailboxTimeout, RestartPolicy, Runtime, RuntimeClosed
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, Explode, account
from .test_runtime_manual_journal import ManualJournal


def refusals(runtime: Runtime) -> tuple[int, int, int]:
    statistics = runtime.statistics()
    return (
        statistics.mailbox_timeouts,
        statistics.mailbox_full_refusals,
        statistics.outbox_full_refusals,
    )


async def _ask(runtime: Runtime, entity_id: str, outcomes: list[Any]) -> None:
    try:
        outcomes.append(await runtime.ask(account, entity_id, Deposit(1)))
    except (MailboxTimeout, RuntimeClosed) as error:
        outcomes.append(error)


@pytest.mark.anyio
async def test_calls_whose_timeout_passed_waiting_for_room_are_counted_once_each() -> None:
    journal = ManualJournal()  # Nothing is durable until the test commits it.
    outcomes: list[Any] = []
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_ask, runtime, "42", outcomes)  # Holds the one slot.
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxTimeout, match="was not executed") as ask_timeout:
            await runtime.ask(account, "42", Deposit(2), timeout_s=0)
        with pytest.raises(MailboxTimeout):
            await runtime.tell(account, "42", Deposit(3), timeout_s=0)
        with pytest.raises(MailboxTimeout):
            await runtime.state(account, "42", timeout_s=0.001)
        assert ask_timeout.value.waited_for == "room"
        assert refusals(runtime) == (3, 0, 0)
        # A caller cancelled while it waits for room is no timeout, even with a deadline.
        with anyio.move_on_after(0.001):
            await runtime.ask(account, "42", Deposit(4), timeout_s=30)
        assert refusals(runtime) == (3, 0, 0)
        journal.commit()
    assert len(outcomes) == 1
    assert refusals(runtime) == (3, 0, 0)


@pytest.mark.anyio
async def test_callers_refused_at_shutdown_while_waiting_for_room_are_not_timeouts() -> None:
    journal = ManualJournal()
    outcomes: list[Any] = []
    async with anyio.create_task_group() as tg:
        async with Runtime(journal, mailbox_bound=1, shutdown_timeout_s=0) as runtime:
            tg.start_soon(_ask, runtime, "42", outcomes)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_ask, runtime, "42", outcomes)  # Waits for room.
            await anyio.wait_all_tasks_blocked()
            assert runtime.statistics().callers_waiting_for_room == 1
        journal.commit()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "RuntimeClosed",
    ]
    assert refusals(runtime) == (0, 0, 0)


@pytest.mark.anyio
async def test_timeouts_of_every_wait_before_a_command_runs_are_counted() -> None:
    clock = ManualClock()  # Never advanced: a backoff lasts until the runtime exits.
    policy = RestartPolicy(backoff_initial_s=5)
    async with (
        ManualJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as runtime,
    ):
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode())
        with pytest.raises(MailboxTimeout) as restart:
            await runtime.ask(account, "42", Deposit(1), timeout_s=0)
        assert restart.value.waited_for == "restart"
        assert refusals(runtime) == (1, 0, 0)
        # Cancelled while it waits out the backoff: no timeout.
        with anyio.move_on_after(0.001):
            await runtime.ask(account, "42", Deposit(1), timeout_s=30)
        assert refusals(runtime) == (1, 0, 0)


@pytest.mark.anyio
async def test_tell_nowait_refusals_are_counted_by_what_was_full() -> None:
    journal = ManualJournal()
    outcomes: list[Any] = []
    async with (
        Runtime(journal, mailbox_bound=1, outbox_bound=1) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_ask, runtime, "42", outcomes)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxFull, match="the mailbox of 'account-42' is full"):
            runtime.tell_nowait(account, "42", Deposit(2))
        assert refusals(runtime) == (0, 1, 0)
        # Queued (their entities are not live): one handed to the idle deliverer, one kept.
        runtime.tell_nowait(account, "7", Deposit(3))
        runtime.tell_nowait(account, "8", Deposit(4))
        with pytest.raises(MailboxFull, match="tell_nowait queue is full"):
            runtime.tell_nowait(account, "9", Deposit(5))
        assert refusals(runtime) == (0, 1, 1)
        await anyio.wait_all_tasks_blocked()
        while journal.pending:
            journal.commit()
            await anyio.wait_all_tasks_blocked()
    # Refused because the runtime has shut down: no room was missing.
    with pytest.raises(RuntimeClosed):
        runtime.tell_nowait(account, "42", Deposit(6))
    assert refusals(runtime) == (0, 1, 1)
    assert runtime.statistics().commands == 3
