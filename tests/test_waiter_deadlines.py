"""Races between a caller's deadline for room and the hand-off of a slot to it.

The keeper of deadlines and the hand-off of a freed slot each wake a parked caller, and the
caller runs only later: by then its deadline may have passed after it was handed a slot, or
a hand-off may come after it was marked expired. Each test puts the two in one step, where
no task runs between them, by doing the keeper's pass (``expire_passed``) or a cancellation
in the hand-off's own wake-up; the deadline passes on a clock set ahead, without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from runtime import MailboxTimeout, Runtime

from .test_runtime_bank import Deposit, Open, account
from .test_runtime_manual_journal import ManualJournal


class AheadClock:
    """The runtime's clock for deadlines, ``ahead`` seconds ahead of the event loop's: its
    callers' deadlines pass when the test moves it, while the keeper's own timer, on the
    loop's clock, stays far off."""

    def __init__(self, runtime: Runtime) -> None:
        self.ahead = 0.0
        self._loop_now = runtime._parking.now
        runtime._parking.now = self.now

    def now(self) -> float:
        return self._loop_now() + self.ahead


def at_the_next_hand_off(
    runtime: Runtime,
    *,
    before: Callable[[Any], object] = lambda parked: None,
    after: Callable[[Any], object] = lambda parked: None,
) -> None:
    """Call ``before(parked)`` and ``after(parked)`` around the wake-up of the caller that the
    next hand-off gives a slot to, in the hand-off's own step (its entry is marked handed)."""
    parking = runtime._parking
    wake = parking.wake

    def hand_off(parked: Any) -> None:
        parking.wake = wake
        before(parked)
        wake(parked)
        after(parked)

    parking.wake = hand_off


async def _ask(
    outcomes: dict[str, Any],
    name: str,
    runtime: Runtime,
    command: Any,
    timeout_s: float | None = None,
) -> None:
    try:
        outcomes[name] = await runtime.ask(account, "42", command, timeout_s=timeout_s)
    except MailboxTimeout as error:
        outcomes[name] = error


@pytest.mark.anyio
async def test_a_caller_handed_a_slot_as_its_deadline_passes_keeps_it() -> None:
    # The holder's answer hands its slot to "handed" and wakes it; before "handed" runs, its
    # deadline passes and the keeper makes its pass. It was given room in time: it must run, and the
    # slot must come back when it answers. Marked expired too, it would time out holding the
    # slot, and the entity would take no command again.
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        clock = AheadClock(runtime)
        tg.start_soon(_ask, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_ask, outcomes, "handed", runtime, Deposit(5), 1)
        await anyio.wait_all_tasks_blocked()
        kept: list[int] = []

        def deadline_passes(parked: Any) -> None:
            clock.ahead = 2
            runtime._deadlines.expire_passed(runtime._parking)
            kept.append(len(runtime._deadlines))

        at_the_next_hand_off(runtime, after=deadline_passes)
        journal.commit()  # the holder answers: its slot goes to "handed"
        await anyio.wait_all_tasks_blocked()
        assert kept == [0], "the keeper's pass did not take the passed deadline"
        assert "handed" not in outcomes
        assert journal.pending == 1, "the caller handed a slot did not run its command"
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        assert outcomes["handed"].version == 2
        statistics = runtime.statistics()
        assert (statistics.commands_in_flight, statistics.callers_waiting_for_room) == (0, 0)
        tg.start_soon(_ask, outcomes, "after", runtime, Deposit(1), 0)
        await anyio.wait_all_tasks_blocked()
        journal.commit()
    assert outcomes["after"].version == 3


@pytest.mark.anyio
async def test_a_slot_freed_as_a_caller_expires_goes_to_the_caller_behind_it() -> None:
    # "late"'s deadline passes and the keeper marks it, and the holder's answer frees its
    # slot, before either runs: the hand-off must pass over "late" (still in the mailbox) to
    # "next", and "late" must time out without running.
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        clock = AheadClock(runtime)
        tg.start_soon(_ask, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_ask, outcomes, "late", runtime, Deposit(5), 1)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_ask, outcomes, "next", runtime, Deposit(1))
        await anyio.wait_all_tasks_blocked()
        handed: list[Any] = []
        at_the_next_hand_off(runtime, before=handed.append)
        clock.ahead = 2
        runtime._deadlines.expire_passed(runtime._parking)
        assert "late" not in outcomes  # woken, not run yet
        journal.commit()  # in the same step: the holder answers
        await anyio.wait_all_tasks_blocked()
        assert len(handed) == 1
        assert isinstance(outcomes["late"], MailboxTimeout)
        assert outcomes["late"].waited_for == "room"
        assert journal.pending == 1, "the slot did not go to the caller behind"
        journal.commit()
    assert [outcomes[name].version for name in ["holder", "next"]] == [1, 2]
    assert [event.data for event in journal.log[1:]] == [{"amount": 1}]


@pytest.mark.anyio
async def test_a_caller_cancelled_as_it_is_handed_a_slot_gives_it_to_the_next() -> None:
    # "cancelled" is cancelled as the holder's answer frees the slot, before it runs: the
    # hand-off, which does not know it, hands it the slot and finds it woken already (by the
    # cancellation), so its wake-up does nothing. It must give the slot back, to "next".
    journal = ManualJournal()
    outcomes: dict[str, Any] = {}
    scope = anyio.CancelScope()

    async def cancellable() -> None:
        with scope:
            await _ask(outcomes, "cancelled", runtime, Deposit(7), 30)

    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_ask, outcomes, "holder", runtime, Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(cancellable)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_ask, outcomes, "next", runtime, Deposit(1))
        await anyio.wait_all_tasks_blocked()
        woken_by_the_cancellation: list[bool] = []

        def cancel(parked: Any) -> None:
            scope.cancel()
            woken_by_the_cancellation.append(runtime._parking.woken(parked))

        at_the_next_hand_off(runtime, before=cancel)
        journal.commit()  # the holder answers: its slot goes to "cancelled"
        await anyio.wait_all_tasks_blocked()
        assert woken_by_the_cancellation == [True]
        assert scope.cancelled_caught
        assert journal.pending == 1, "the slot handed to the cancelled caller was not given on"
        journal.commit()
    assert [outcomes[name].version for name in ["holder", "next"]] == [1, 2]
    assert "cancelled" not in outcomes
    assert [event.data for event in journal.log[1:]] == [{"amount": 1}]
