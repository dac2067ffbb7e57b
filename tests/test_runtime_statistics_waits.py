"""What ``statistics()`` shows of the callers held before their command runs, other than for
room in a mailbox: those sleeping out a restart backoff (``callers_waiting_for_restart``) and
those whose command waits for room in a full journal (``callers_waiting_for_journal``); and
of the appends waiting for that room, asked or told (``appends_waiting_for_journal``). Each
gauge counts a caller from the moment it waits until it goes on, times out, is cancelled or
is refused at shutdown, a command of the outbox only in ``outbox_depth`` until it is
delivered, and a told command whose caller has returned as no caller."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from journals import MemoryJournal
from runtime import MailboxTimeout, RestartPolicy, Runtime, RuntimeClosed
from runtime.testing import ManualClock

from .test_runtime_bank import Account, Deposit, Explode, account
from .test_runtime_manual_journal import ManualJournal

BACKOFF_S = 5.0


def waiting(runtime: Runtime) -> tuple[int, int, int]:
    statistics = runtime.statistics()
    return (
        statistics.callers_waiting_for_restart,
        statistics.callers_waiting_for_journal,
        statistics.appends_waiting_for_journal,
    )


async def _call(runtime: Runtime, how: str, entity_id: str, outcomes: list[Any]) -> None:
    try:
        if how == "ask":
            outcomes.append(await runtime.ask(account, entity_id, Deposit(1)))
        elif how == "tell":
            await runtime.tell(account, entity_id, Deposit(1))
            outcomes.append("told")
        else:
            outcomes.append(await runtime.state(account, entity_id))
    except RuntimeClosed as error:
        outcomes.append(error)


async def _crash(runtime: Runtime, entity_id: str) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await runtime.ask(account, entity_id, Explode())


@pytest.mark.anyio
async def test_callers_sleeping_out_a_restart_backoff_are_counted_until_they_go_on() -> None:
    clock = ManualClock()
    policy = RestartPolicy(backoff_initial_s=BACKOFF_S)
    outcomes: list[Any] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as runtime,
        anyio.create_task_group() as tg,
    ):
        await _crash(runtime, "42")
        for how in ["ask", "tell", "state"]:
            tg.start_soon(_call, runtime, how, "42", outcomes)
        await anyio.wait_all_tasks_blocked()
        assert waiting(runtime) == (3, 0, 0)
        # A command of the outbox waiting out the backoff is counted there only.
        runtime.tell_nowait(account, "42", Deposit(2))
        await anyio.wait_all_tasks_blocked()
        assert (waiting(runtime), runtime.statistics().outbox_depth) == ((3, 0, 0), 1)
        with pytest.raises(MailboxTimeout, match="restart backoff"):
            await runtime.ask(account, "42", Deposit(3), timeout_s=0)
        with anyio.move_on_after(0.001):  # Cancelled while it sleeps.
            await runtime.ask(account, "42", Deposit(4))
        assert waiting(runtime) == (3, 0, 0)
        clock.advance(BACKOFF_S)
        await anyio.wait_all_tasks_blocked()
        assert waiting(runtime) == (0, 0, 0)
    assert len(outcomes) == 3
    assert runtime.statistics().commands == 3  # the ask, the tell and the queued command


@pytest.mark.anyio
async def test_callers_sleeping_out_a_backoff_leave_the_count_at_a_reset_or_at_shutdown() -> None:
    clock = ManualClock()  # Never advanced: only a reset or the shutdown ends a backoff.
    policy = RestartPolicy(backoff_initial_s=BACKOFF_S)
    outcomes: list[Any] = []
    async with anyio.create_task_group() as tg, MemoryJournal() as journal:
        runtime = Runtime(journal, clock=clock, restart_policy=policy)
        async with runtime:
            await _crash(runtime, "reset")
            await _crash(runtime, "shutdown")
            for entity_id in ["reset", "shutdown", "shutdown"]:
                tg.start_soon(_call, runtime, "ask", entity_id, outcomes)
            await anyio.wait_all_tasks_blocked()
            assert waiting(runtime) == (3, 0, 0)
            runtime.reset(account, "reset")
            await anyio.wait_all_tasks_blocked()
            assert waiting(runtime) == (2, 0, 0)
        assert waiting(runtime) == (0, 0, 0)
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "RuntimeClosed",
        "RuntimeClosed",
    ]


@pytest.mark.anyio
async def test_callers_whose_command_waits_for_room_in_the_journal_are_counted() -> None:
    journal = ManualJournal(start_appends=True)
    outcomes: list[Any] = []
    async with (
        journal,
        Runtime(journal) as runtime,
        anyio.create_task_group() as tg,
    ):
        journal.full = True
        tg.start_soon(_call, runtime, "ask", "42", outcomes)  # Its append waits for room.
        await anyio.wait_all_tasks_blocked()
        assert (waiting(runtime), len(journal.queued)) == ((0, 1, 1), 1)
        # Held behind it: nothing of the entity is decided while that append may be taken back.
        for how in ["ask", "tell", "state"]:
            tg.start_soon(_call, runtime, how, "42", outcomes)
        tg.start_soon(_call, runtime, "ask", "7", outcomes)  # Another entity's append waits.
        await anyio.wait_all_tasks_blocked()
        assert waiting(runtime) == (0, 5, 2)
        runtime.tell_nowait(account, "42", Deposit(2))  # Counted in the outbox only.
        await anyio.wait_all_tasks_blocked()
        assert (waiting(runtime), runtime.statistics().outbox_depth) == ((0, 5, 2), 1)
        with pytest.raises(MailboxTimeout, match="waiting for room in the journal"):
            await runtime.ask(account, "42", Deposit(3), timeout_s=0)
        with anyio.move_on_after(0.001):  # Cancelled while held.
            await runtime.ask(account, "42", Deposit(4))
        assert waiting(runtime) == (0, 5, 2)
        journal.full = False
        journal.make_room()
        await anyio.wait_all_tasks_blocked()
        assert waiting(runtime) == (0, 0, 0)
        while journal.pending:
            journal.commit()
            await anyio.wait_all_tasks_blocked()
    assert len(outcomes) == 5
    assert runtime.statistics().commands == 5  # 2 asks, the tell and the queued command


@pytest.mark.anyio
async def test_an_append_taken_back_while_it_waits_for_room_leaves_the_count() -> None:
    journal = ManualJournal(start_appends=True)
    async with journal, Runtime(journal) as runtime:
        journal.full = True
        with anyio.move_on_after(0.001):  # Its append is withdrawn, never written.
            await runtime.ask(account, "42", Deposit(1))
        assert (waiting(runtime), journal.queued) == ((0, 0, 0), [])
        journal.full = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call, runtime, "ask", "42", [])
            await anyio.wait_all_tasks_blocked()
            journal.commit()
    assert [event.data for event in journal.log] == [{"amount": 1}]


@pytest.mark.anyio
async def test_callers_held_by_a_full_journal_leave_the_count_when_refused_at_shutdown() -> None:
    journal = ManualJournal(start_appends=True)
    outcomes: list[Any] = []
    async with journal, anyio.create_task_group() as tg:
        journal.full = True
        runtime = Runtime(journal, shutdown_timeout_s=0)
        async with runtime:
            tg.start_soon(_call, runtime, "ask", "42", outcomes)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_call, runtime, "ask", "42", outcomes)  # Held behind it.
            await anyio.wait_all_tasks_blocked()
            assert waiting(runtime) == (0, 2, 1)
        # The runtime has shut down; the journal, still open, makes room later.
        journal.full = False
        journal.make_room()
        await anyio.wait_all_tasks_blocked()
        assert waiting(runtime) == (0, 0, 0)
        journal.commit()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "RuntimeClosed",
    ]


@pytest.mark.anyio
async def test_a_told_command_whose_append_waits_for_the_journal_is_no_caller_waiting() -> None:
    journal = ManualJournal(start_appends=True)
    outcomes: list[Any] = []
    async with journal, anyio.create_task_group() as tg:
        journal.full = True
        runtime = Runtime(journal, shutdown_timeout_s=0)
        async with runtime:
            await runtime.tell(account, "42", Deposit(1))  # Returns; its append waits.
            runtime.tell_nowait(account, "7", Deposit(1))  # Delivered; its append waits.
            await anyio.wait_all_tasks_blocked()
            assert (waiting(runtime), len(journal.queued)) == ((0, 0, 2), 2)
            assert runtime.statistics().outbox_depth == 0
            # A caller held behind a told append is one; it leaves the count as it times
            # out, is cancelled, or goes on.
            tg.start_soon(_call, runtime, "state", "42", outcomes)
            await anyio.wait_all_tasks_blocked()
            assert waiting(runtime) == (0, 1, 2)
            with pytest.raises(MailboxTimeout, match="waiting for room in the journal"):
                await runtime.tell(account, "42", Deposit(2), timeout_s=0)
            with anyio.move_on_after(0.001):
                await runtime.ask(account, "7", Deposit(2))
            assert waiting(runtime) == (0, 1, 2)
            journal.full = False
            journal.make_room(1)  # The first append, of entity 42, is placed.
            await anyio.wait_all_tasks_blocked()
            assert (waiting(runtime), len(journal.queued)) == ((0, 0, 1), 1)
        # Shutdown gave up on the told command whose append still waited: it was taken back.
        assert (waiting(runtime), journal.queued) == ((0, 0, 0), [])
        journal.commit()
    assert outcomes == [Account("", 1, 1)]
    assert [event.stream_id for event in journal.log] == ["account-42"]
