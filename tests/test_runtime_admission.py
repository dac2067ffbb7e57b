"""Callers waiting for room: cancelled waiters, handed slots, and the cost of their deadlines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio.testing

from journals import JournalFailed, MemoryJournal
from runtime import MailboxFull, MailboxTimeout, Runtime, RuntimeClosed
from runtime._actor import MAILBOX_COMPACT_MIN
from runtime._deadlines import DEADLINES_COMPACT_MIN
from runtime.testing import ManualClock

from .test_runtime_bank import Account, Command, Deposit, Explode, Open, account
from .test_runtime_manual_journal import ManualJournal

CANCELLED_WAITERS = 50


async def _record(outcomes: dict[str, Any], name: str, runtime: Runtime, command: Any) -> None:
    try:
        outcomes[name] = await runtime.ask(account, "42", command, timeout_s=30)
    except (MailboxTimeout, RuntimeClosed) as error:
        outcomes[name] = error


async def _cancelled_waiters(outcomes: dict[str, Any], runtime: Runtime, group: str) -> None:
    """Start CANCELLED_WAITERS waiters for room, then cancel them all at once."""
    async with anyio.create_task_group() as doomed:
        for number in range(CANCELLED_WAITERS):
            doomed.start_soon(_record, outcomes, f"{group}-{number}", runtime, Deposit(7))
        await anyio.wait_all_tasks_blocked()
        doomed.cancel_scope.cancel()


@pytest.mark.anyio
async def test_waiters_cancelled_together_are_skipped_and_never_executed() -> None:
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    async with anyio.create_task_group() as outer, Runtime(journal, mailbox_bound=1) as runtime:
        # The mailbox: first, 50 cancelled, second, 50 cancelled, last.
        outer.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        for name in ["first", "second", "last"]:
            if name != "first":
                await _cancelled_waiters(outcomes, runtime, f"cancelled-before-{name}")
            outer.start_soon(_record, outcomes, name, runtime, Deposit(len(name)))
            await anyio.wait_all_tasks_blocked()
        assert runtime.statistics().callers_waiting_for_room == 3
        journal.commit()  # the holder answers; its slot goes to "first"
        await anyio.wait_all_tasks_blocked()
        journal.commit()  # "first" answers; its slot goes past 50 cancelled to "second"
        await anyio.wait_all_tasks_blocked()
        assert journal.pending == 1
        assert runtime.statistics().callers_waiting_for_room == 1

        async def commit_later() -> None:
            await anyio.wait_all_tasks_blocked()
            journal.commit()

        # Leaving wakes what is left in the mailbox: 50 cancelled entries (nothing happens
        # to them) and "last", which was never accepted.
        outer.start_soon(commit_later)
    assert [outcomes[name].version for name in ["holder", "first", "second"]] == [1, 2, 3]
    assert isinstance(outcomes["last"], RuntimeClosed)
    assert "shutting down or has shut down" in str(outcomes["last"])
    assert "not accepted and not executed" in str(outcomes["last"])
    assert not any(name.startswith("cancelled") for name in outcomes)
    assert [event.data for event in journal.log[1:]] == [{"amount": 5}, {"amount": 6}]


@pytest.mark.anyio
async def test_a_waiter_cancelled_as_its_slot_frees_up_leaves_it_to_the_next() -> None:
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    scopes: list[anyio.CancelScope] = []

    async def cancellable() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await _record(outcomes, "cancelled", runtime, Deposit(7))

    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(cancellable)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_record, outcomes, "next", runtime, Deposit(1))
        await anyio.wait_all_tasks_blocked()
        # In one step: the holder's answer frees its slot and the first waiter is cancelled.
        # Whichever runs first (the slot handed to the cancelled waiter, which gives it back,
        # or the waiter leaving before the hand-off), the slot ends up with "next".
        journal.commit()
        scopes[0].cancel()
        await anyio.wait_all_tasks_blocked()
        assert journal.pending == 1
        journal.commit()
    assert outcomes["holder"].version == 1
    assert outcomes["next"].version == 2
    assert "cancelled" not in outcomes
    assert [event.data for event in journal.log[1:]] == [{"amount": 1}]


@pytest.mark.anyio
async def test_deadlines_kept_stay_proportional_to_the_callers_waiting() -> None:
    # Four callers take turns on one slot with a long timeout: every command waits for room
    # with a deadline, and is handed a slot long before it. What the runtime keeps for those
    # deadlines must not grow with the number of commands.
    commands = 3 * DEADLINES_COMPACT_MIN
    async with MemoryJournal() as journal, Runtime(journal, mailbox_bound=1) as runtime:

        async def caller(turns: int) -> None:
            for _ in range(turns):
                await runtime.ask(account, "42", Deposit(1), timeout_s=60)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(caller, commands // 4)
        assert runtime.statistics().commands == commands
        assert len(runtime._deadlines) <= DEADLINES_COMPACT_MIN


@pytest.mark.anyio
async def test_callers_that_time_out_while_every_slot_stays_taken_are_not_kept() -> None:
    # The journal does not commit (a disk that stalls), so the one slot stays taken and no
    # release clears the mailbox. Callers that time out and try again, and callers that are
    # cancelled, must not leave an entry each behind them for as long as that lasts; the
    # callers still waiting keep their places.
    attempts = 10 * MAILBOX_COMPACT_MIN
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_record, outcomes, "first", runtime, Deposit(1))
        await anyio.wait_all_tasks_blocked()
        timeouts = 0
        for attempt in range(attempts):
            if attempt == attempts // 2:
                tg.start_soon(_record, outcomes, "second", runtime, Deposit(2))
                await _cancelled_waiters(outcomes, runtime, "cancelled")
            try:
                await runtime.ask(account, "42", Deposit(3), timeout_s=0)
            except MailboxTimeout:
                timeouts += 1
        actor = runtime._actors[account.stream_id("42")]
        assert actor.waiting is not None
        assert len(actor.waiting.mailbox) <= MAILBOX_COMPACT_MIN
        assert (timeouts, runtime.statistics().callers_waiting_for_room) == (attempts, 2)
        for _ in range(3):
            journal.commit()
            await anyio.wait_all_tasks_blocked()
    assert [outcomes[name].version for name in ["holder", "first", "second"]] == [1, 2, 3]
    assert not any(name.startswith("cancelled") for name in outcomes)
    assert [event.data for event in journal.log[1:]] == [{"amount": 1}, {"amount": 2}]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_runtime_built_outside_the_event_loop_times_waiters_out_on_it(backend: str) -> None:
    journal = ManualJournal()
    runtime = Runtime(journal, mailbox_bound=1)
    outcomes: dict[str, Any] = {}

    async def main() -> None:
        async with runtime, anyio.create_task_group() as tg:
            tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(MailboxTimeout, match="was not executed"):
                await runtime.ask(account, "42", Deposit(5), timeout_s=0.01)
            journal.commit()

    anyio.run(main, backend=backend)
    assert outcomes["holder"].version == 1
    assert journal.statistics().events == 1


async def _wait(outcomes: dict[str, Any], name: str, runtime: Runtime, timeout_s: float) -> None:
    try:
        outcomes[name] = await runtime.ask(account, "42", Deposit(1), timeout_s=timeout_s)
    except (MailboxTimeout, RuntimeClosed) as error:
        outcomes[name] = error


def run_on_a_mock_clock(main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on trio with a clock that jumps to the next deadline once all tasks wait."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(main, backend="trio", backend_options={"clock": clock})


def test_a_deadline_kept_after_a_compaction_still_comes_first() -> None:
    # Callers wait for room with deadlines at 1 s ("first"), 60 s ("late"), 1 s ("soon",
    # after "first"), then 60 s (the rest), to the size that compacts the deadlines kept.
    # "first" is handed the slot; the next caller's deadline drops its entry. The earliest
    # deadline left, "soon"'s, must come first again: a heap left in the order the entries
    # had would put "late" first, and "soon" would wait for room until 60 s. On trio's mock
    # clock, whose time moves only when every task waits, the seconds pass at once.
    journal = ManualJournal()
    runtime = Runtime(journal, mailbox_bound=1)
    outcomes: dict[str, Any] = {}

    async def main() -> None:
        async with runtime, anyio.create_task_group() as tg:
            tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            callers = [("first", 1), ("late", 60), ("soon", 1)]
            callers += [(f"caller {n}", 60) for n in range(DEADLINES_COMPACT_MIN - len(callers))]
            for name, timeout_s in callers:
                tg.start_soon(_wait, outcomes, name, runtime, timeout_s)
                await anyio.wait_all_tasks_blocked()
            assert len(runtime._deadlines) == DEADLINES_COMPACT_MIN
            journal.commit()  # the holder answers: "first" is handed its slot
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_wait, outcomes, "next", runtime, 60)  # its deadline compacts the others
            await anyio.wait_all_tasks_blocked()
            assert len(runtime._deadlines) == DEADLINES_COMPACT_MIN
            await anyio.sleep(2)
            assert isinstance(outcomes["soon"], MailboxTimeout)
            assert "late" not in outcomes
            journal.commit()  # "first" answers
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # the callers left waiting go away

    run_on_a_mock_clock(main)
    assert [outcomes[name].version for name in ["holder", "first"]] == [1, 2]


def test_a_caller_with_an_earlier_deadline_than_those_waiting_times_out_at_it() -> None:
    # "patient" waits for room until 60 s; "hasty", come after it, until 1 s: the deadlines'
    # keeper, asleep until 60 s, must wake for the earlier one.
    journal = ManualJournal()
    runtime = Runtime(journal, mailbox_bound=1)
    outcomes: dict[str, Any] = {}

    async def main() -> None:
        async with runtime, anyio.create_task_group() as tg:
            tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            for name, timeout_s in [("patient", 60), ("hasty", 1)]:
                tg.start_soon(_wait, outcomes, name, runtime, timeout_s)
                await anyio.wait_all_tasks_blocked()
            await anyio.sleep(2)
            assert isinstance(outcomes["hasty"], MailboxTimeout)
            assert "patient" not in outcomes
            journal.commit()  # the holder answers; its slot goes to "patient"
            await anyio.wait_all_tasks_blocked()
            journal.commit()

    run_on_a_mock_clock(main)
    assert [outcomes[name].version for name in ["holder", "patient"]] == [1, 2]


@pytest.mark.anyio
async def test_deadlines_of_callers_cancelled_while_waiting_are_not_kept() -> None:
    # Three rounds of callers wait for room with a long timeout and are cancelled: their
    # deadlines, far off, must not stay kept until they pass, round after round.
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_record, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        for round_number in range(3):
            async with anyio.create_task_group() as doomed:
                for number in range(DEADLINES_COMPACT_MIN):
                    name = f"cancelled-{round_number}-{number}"
                    doomed.start_soon(_record, outcomes, name, runtime, Deposit(7))
                await anyio.wait_all_tasks_blocked()
                doomed.cancel_scope.cancel()
        assert len(runtime._deadlines) <= DEADLINES_COMPACT_MIN
        journal.commit()
    assert outcomes["holder"].version == 1
    assert not any(name.startswith("cancelled") for name in outcomes)


async def _outcome(outcomes: dict[str, Any], name: str, runtime: Runtime, command: Any) -> None:
    """Record what the command got back, whatever it was."""
    try:
        outcomes[name] = await runtime.ask(account, "42", command)
    except Exception as error:
        outcomes[name] = error


@pytest.mark.anyio
@pytest.mark.parametrize("bound", [1, 3])
@pytest.mark.parametrize("start_appends", [False, True])
async def test_a_live_actor_admits_exactly_its_mailbox_bound(
    bound: int, start_appends: bool
) -> None:
    # The actor is live and ready, so commands take the fast path in: the bound holds there
    # too. Commands held for their commits fill the mailbox; one more waits for room.
    journal = ManualJournal(start_appends=start_appends)
    outcomes: dict[str, Any] = {}
    with anyio.fail_after(5):
        async with (
            Runtime(journal, mailbox_bound=bound, shutdown_timeout_s=0.5) as runtime,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_outcome, outcomes, "open", runtime, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            for number in range(bound + 1):
                tg.start_soon(_outcome, outcomes, f"deposit {number}", runtime, Deposit(1))
                await anyio.wait_all_tasks_blocked()
            statistics = runtime.statistics()
            assert statistics.commands_in_flight == bound, "admitted beyond the bound"
            assert statistics.mailbox_depth_max == bound
            assert statistics.callers_waiting_for_room == 1
            assert journal.pending == bound
            journal.commit()  # the answers make room: the last deposit gets in
            await anyio.wait_all_tasks_blocked()
            assert journal.pending == 1
            assert runtime.statistics().callers_waiting_for_room == 0
            journal.commit()
    versions = sorted(outcomes[f"deposit {number}"].version for number in range(bound + 1))
    assert versions == list(range(2, bound + 3))


@pytest.mark.anyio
async def test_a_caller_waiting_for_room_gets_going_when_the_actor_crashes() -> None:
    # One slot: the crash waits for room behind the holder, the deposit behind the crash.
    # The holder's answer hands its slot to the crash, which breaks the actor: the deposit,
    # still waiting, must be woken to wait for the restart, and run then.
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    commands: list[tuple[str, Command]] = [
        ("holder", Open("ada")),
        ("crash", Explode()),
        ("deposit", Deposit(2)),
    ]
    with anyio.fail_after(5):
        async with (
            Runtime(
                journal, mailbox_bound=1, clock=ManualClock(autojump=True), shutdown_timeout_s=0.5
            ) as runtime,
            anyio.create_task_group() as tg,
        ):
            for name, command in commands:
                tg.start_soon(_outcome, outcomes, name, runtime, command)
                await anyio.wait_all_tasks_blocked()
            assert runtime.statistics().callers_waiting_for_room == 2
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert isinstance(outcomes["crash"], RuntimeError)
            assert str(outcomes["crash"]) == "boom"
            assert "deposit" not in outcomes
            assert journal.pending == 1, "the deposit did not run on the restarted actor"
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert outcomes["deposit"].version == 2
            assert runtime.statistics().restarts == 1
    assert outcomes["holder"].version == 1


@pytest.mark.anyio
async def test_a_caller_waiting_for_room_gets_the_journal_failure_that_breaks_the_actor() -> None:
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    with anyio.fail_after(5):
        async with (
            Runtime(journal, mailbox_bound=1, shutdown_timeout_s=0.5) as runtime,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_outcome, outcomes, "holder", runtime, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_outcome, outcomes, "waiting", runtime, Deposit(2))
            await anyio.wait_all_tasks_blocked()
            assert runtime.statistics().callers_waiting_for_room == 1
            journal.fail(OSError(5, "fsync failed"))
            await anyio.wait_all_tasks_blocked()
            # Woken, it waited for the actor to settle, was accepted by a fresh one, and got
            # the failed journal's refusal: nothing is left waiting.
            assert isinstance(outcomes["holder"], JournalFailed)
            waiting = outcomes.get("waiting")
            assert isinstance(waiting, JournalFailed), "left waiting for room on a broken actor"
            assert await runtime.state(account, "42") == Account()


@pytest.mark.anyio
async def test_state_reads_and_appends_whose_callers_went_away_hold_mailbox_slots() -> None:
    """What the mailbox bound counts: a ``state()`` read holds a slot until it answers, and a
    command whose caller was cancelled mid-append holds its slot until the outcome is known."""
    journal = ManualJournal(start_appends=True)
    async with Runtime(journal, mailbox_bound=2) as runtime:
        asker = anyio.CancelScope()
        cancelled: list[bool] = []

        async def ask_then_go_away() -> None:
            with asker:
                await runtime.ask(account, "42", Open("ada"))  # Waits for its commit.
            cancelled.append(asker.cancelled_caught)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask_then_go_away)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(runtime.state, account, "42")  # Waits for the open to be durable.
            await anyio.wait_all_tasks_blocked()
            stats = runtime.statistics()
            assert (stats.mailbox_depth_max, stats.commands_in_flight) == (2, 2)
            with pytest.raises(MailboxFull, match="is full"):
                runtime.tell_nowait(account, "42", Deposit(1))
            asker.cancel()  # The asker goes away; its append is in the log already.
            await anyio.wait_all_tasks_blocked()
            assert cancelled == [True]
            assert runtime.statistics().mailbox_depth_max == 2
            with pytest.raises(MailboxTimeout, match="mailbox stayed full"):
                await runtime.ask(account, "42", Deposit(1), timeout_s=0)
            journal.commit()
        stats = runtime.statistics()
        assert (stats.mailbox_depth_max, stats.commands_in_flight) == (0, 0)
        assert await runtime.state(account, "42") == Account("ada")
