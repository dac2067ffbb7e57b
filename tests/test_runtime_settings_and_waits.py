"""Settings out of range are refused; every wait of admission keeps the caller's timeout.

A command waits for room in the mailbox, and also for its entity's activation, for another
caller's activation of it, for a broken actor's commands in flight to settle and for a restart's
backoff. Whichever it is waiting for, ``timeout_s`` ends the wait with ``MailboxTimeout`` and
the command is not executed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

import anyio
import pytest

from journals import InvalidStreamId, MemoryJournal
from runtime import MailboxTimeout, RestartPolicy, Runtime, RuntimeClosed
from runtime.testing import ManualClock

from .journal_doubles import SlowActivations
from .test_runtime_admission import run_on_a_mock_clock
from .test_runtime_bank import Account, Deposit, Explode, Open, account, make_account
from .test_runtime_manual_journal import ManualJournal

# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("mailbox_bound", 0, "mailbox_bound must be a whole number of at least 1, not 0"),
        ("mailbox_bound", 2.5, "mailbox_bound must be a whole number of at least 1, not 2.5"),
        ("mailbox_bound", math.inf, "mailbox_bound must be a whole number of at least 1, not inf"),
        ("mailbox_bound", True, "mailbox_bound must be a whole number of at least 1, not True"),
        ("max_live_actors", 0, "max_live_actors must be a whole number of at least 1 or None"),
        ("passivate_after_s", 0, "passivate_after_s must be a number of seconds > 0 or None"),
        ("passivate_after_s", math.nan, "passivate_after_s must be a number of seconds > 0"),
        ("passivate_after_s", True, "passivate_after_s must be a number of .* not True"),
        ("passivate_after_s", "300", "passivate_after_s must be a number of .* not '300'"),
        ("passivate_after_s", timedelta(minutes=5), "passivate_after_s must be a number of "),
        ("shutdown_timeout_s", -1, "shutdown_timeout_s must be a number of seconds >= 0, not -1"),
        ("shutdown_timeout_s", math.nan, "shutdown_timeout_s must be a number of .* not nan"),
        ("shutdown_timeout_s", True, "shutdown_timeout_s must be a number of .* not True"),
        ("shutdown_timeout_s", "10", "shutdown_timeout_s must be a number of .* not '10'"),
        ("shutdown_timeout_s", timedelta(seconds=10), "shutdown_timeout_s must be a number of "),
        ("outbox_bound", 0, "outbox_bound must be a whole number of at least 1, not 0"),
        ("outbox_bound", math.inf, "outbox_bound must be a whole number of at least 1, not inf"),
        ("snapshot_queue_bound", -3, "snapshot_queue_bound must be a whole number of at least 1"),
        (
            "snapshot_on_passivation",
            None,
            "snapshot_on_passivation must be True or False, not None",
        ),
        ("snapshot_on_passivation", 1, "snapshot_on_passivation must be True or False, not 1"),
        ("owns_journal", "false", "owns_journal must be True or False, not 'false'"),
        ("owns_journal", 0, "owns_journal must be True or False, not 0"),
    ],
)
def test_a_setting_out_of_range_is_refused_when_the_runtime_is_made(
    setting: str, value: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Runtime(MemoryJournal(), **{setting: value})


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("restart_policy", 3, "restart_policy must be a RestartPolicy or None, not 3"),
        ("restart_policy", {"max_restarts": 1}, "restart_policy must be a RestartPolicy or None"),
        ("clock", 3, r"clock must have now\(\) .* and async sleep\(seconds\), or be None"),
        ("clock", object(), r"clock must have now\(\)"),
        ("clock", ManualClock, r"not the class ManualClock: clock=ManualClock\(\)$"),
    ],
)
def test_a_policy_or_clock_of_another_kind_is_refused_when_the_runtime_is_made(
    setting: str, value: Any, message: str
) -> None:
    """Not at the first crash (the policy) or as the runtime starts (the clock), far from the
    mistake."""
    with pytest.raises(TypeError, match=message):
        Runtime(MemoryJournal(), **{setting: value})


class _BrokenClock(ManualClock):
    def now(self) -> float:
        raise OSError("no clock here")


@pytest.mark.anyio
async def test_a_clock_that_fails_fails_the_start_and_leaves_the_journal_to_close() -> None:
    async with MemoryJournal() as journal:
        with pytest.raises(OSError, match="no clock here"):
            async with Runtime(journal, clock=_BrokenClock()):
                pytest.fail("the runtime started without a clock")
        async with Runtime(journal) as runtime:  # Nothing of the first is left entered.
            await runtime.ask(account, "42", Open("ada"))
    # Left in order: the journal's close found its own task group innermost.
    assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_durations_given_as_ints_or_without_a_limit_are_taken() -> None:
    async with MemoryJournal() as journal:
        runtime = Runtime(journal, passivate_after_s=math.inf, shutdown_timeout_s=math.inf)
        async with runtime:
            await runtime.ask(account, "42", Open("ada"))
        runtime = Runtime(journal, passivate_after_s=300, shutdown_timeout_s=0)
        async with runtime:
            await runtime.ask(account, "43", Open("bob"))
        assert runtime.statistics().commands == 1


@pytest.mark.anyio
async def test_bounds_given_as_other_whole_numbers_are_taken_as_ints() -> None:
    class Count:
        def __index__(self) -> int:
            return 2

    async with MemoryJournal() as journal:
        runtime = Runtime(journal, mailbox_bound=Count(), outbox_bound=Count())  # type: ignore[arg-type]
        async with runtime:
            await runtime.ask(account, "42", Open("ada"))
            runtime.tell_nowait(account, "42", Deposit(1))
            runtime.tell_nowait(account, "42", Deposit(2))
        assert runtime.statistics().commands == 3


@pytest.mark.anyio
async def test_a_runtime_is_entered_once() -> None:
    async with MemoryJournal() as journal:
        runtime = Runtime(journal)
        async with runtime:
            pass
        with pytest.raises(RuntimeError, match="entered only once; create a new one"):
            async with runtime:
                pass


@pytest.mark.anyio
async def test_tell_tell_nowait_and_state_name_a_wrong_entity_id() -> None:
    wrong: Any = 42
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        with pytest.raises(TypeError, match="entity ids are str, not int"):
            await runtime.tell(account, wrong, Open("ada"))
        with pytest.raises(TypeError, match="entity ids are str, not int"):
            runtime.tell_nowait(account, wrong, Open("ada"))
        with pytest.raises(TypeError, match="entity ids are str, not int"):
            await runtime.state(account, wrong)
        with pytest.raises(TypeError, match="the first argument must be an Aggregate"):
            await runtime.state("account", "42")  # type: ignore[arg-type]
        assert runtime.statistics().activations == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("entity_id", "message"),
    [
        ("x" * 248, "stream id is 256 bytes long in UTF-8; the limit is 255"),
        ("é" * 124, "stream id is 256 bytes long in UTF-8; the limit is 255"),
        ("\ud800" * 70, "is not valid UTF-8"),
        ("42\ud800", "is not valid UTF-8"),
    ],
)
async def test_tell_nowait_refuses_an_entity_id_no_journal_takes_at_the_call_as_tell_does(
    entity_id: str, message: str
) -> None:
    """Not accepted into the outbox and then dropped at delivery, where only the log says so."""
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        with pytest.raises(InvalidStreamId, match=message):
            await runtime.tell(account, entity_id, Open("ada"))
        with pytest.raises(InvalidStreamId, match=message):
            runtime.tell_nowait(account, entity_id, Open("ada"))
        assert runtime.statistics().outbox_depth == 0
        runtime.tell_nowait(account, "x" * 247, Open("ada"))  # 255 bytes: the longest id
        runtime.tell_nowait(account, "é" * 123 + "x", Open("bob"))
    assert runtime.statistics().outbox_undelivered == 0
    assert runtime.statistics().commands == 2


@pytest.mark.anyio
@pytest.mark.parametrize("timeout_s", [math.nan, -1, -0.5, True, "5"])
@pytest.mark.parametrize("call", ["ask", "tell", "state"])
async def test_a_timeout_that_is_no_number_of_seconds_is_refused_even_with_room(
    call: str, timeout_s: Any
) -> None:
    message = r"timeout_s must be a number of seconds of at least 0, or None .*, not "
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "ask": partial(runtime.ask, account, "42", Deposit(5), timeout_s=timeout_s),
            "tell": partial(runtime.tell, account, "42", Deposit(5), timeout_s=timeout_s),
            "state": partial(runtime.state, account, "42", timeout_s=timeout_s),
        }
        with pytest.raises(ValueError, match=message + repr(timeout_s)):
            await calls[call]()
        assert await runtime.state(account, "42") == Account("ada")


@pytest.mark.anyio
async def test_a_timeout_of_zero_does_not_wait_and_infinity_waits_without_a_limit() -> None:
    journal = ManualJournal(start_appends=True)
    async with Runtime(journal, mailbox_bound=1) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "42", Open("ada"))  # Holds the only slot.
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(MailboxTimeout, match="within 0 s"):
                await runtime.ask(account, "42", Deposit(5), timeout_s=0)
            tg.start_soon(partial(runtime.ask, account, "42", Deposit(7), timeout_s=math.inf))
            await anyio.wait_all_tasks_blocked()
            assert runtime.statistics().callers_waiting_for_room == 1
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert await runtime.state(account, "42") == Account("ada", 7, 1)


# -- the waits of admission ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_timeout_ends_the_wait_for_the_entitys_activation() -> None:
    async with SlowActivations() as journal, Runtime(journal) as runtime:
        with pytest.raises(
            MailboxTimeout, match=r"within 0\.05 s: it was still being activated"
        ) as caught:
            await runtime.ask(account, "42", Open("ada"), timeout_s=0.05)
        assert caught.value.waited_for == "activation"
        assert runtime.statistics().live_actors == 0  # The activation was given up.
        journal.gate.set()
        await runtime.ask(account, "42", Open("bob"))
        assert await runtime.state(account, "42") == Account("bob")
        assert runtime.statistics().activations == 1


def test_the_wait_for_an_activation_ends_at_the_callers_deadline() -> None:
    # On a clock that jumps to the next deadline: the caller is told at 1 s, not later.
    told_at: list[float] = []

    async def main() -> None:
        async with SlowActivations() as journal, Runtime(journal) as runtime:
            with pytest.raises(MailboxTimeout, match="it was still being activated"):
                await runtime.ask(account, "42", Open("ada"), timeout_s=1)
            told_at.append(anyio.current_time())
            journal.gate.set()

    run_on_a_mock_clock(main)
    assert told_at == [1.0]


@pytest.mark.anyio
async def test_a_timeout_ends_the_wait_for_another_callers_activation() -> None:
    async with SlowActivations() as journal, Runtime(journal) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(
                MailboxTimeout, match=r"within 0\.05 s: it was still being activated"
            ) as caught:
                await runtime.ask(account, "42", Deposit(5), timeout_s=0.05)
            assert caught.value.waited_for == "activation"
            journal.gate.set()
        assert await runtime.state(account, "42") == Account("ada")
        assert runtime.statistics().activations == 1


@pytest.mark.anyio
async def test_an_activation_the_shutdown_closes_the_journal_under_is_refused_as_such() -> None:
    journal = SlowActivations()
    refused: list[RuntimeClosed] = []

    async def activate(runtime: Runtime) -> None:
        try:
            await runtime.ask(account, "42", Open("ada"))
        except RuntimeClosed as error:
            refused.append(error)

    async with anyio.create_task_group() as tg:
        async with Runtime(journal, owns_journal=True) as runtime:
            tg.start_soon(activate, runtime)
            await anyio.wait_all_tasks_blocked()
        journal.gate.set()  # The activation reads on, from the journal closed by now.
    # Not JournalClosed, which would say the journal was used before it was opened.
    assert len(refused) == 1
    assert "shutting down or has shut down" in str(refused[0])


@pytest.mark.anyio
async def test_a_timeout_ends_the_wait_for_a_broken_actor_to_settle() -> None:
    journal = ManualJournal(start_appends=True)
    async with Runtime(journal) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "42", Open("ada"))  # Waits for its commit.
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="boom"):
                await runtime.ask(account, "42", Explode())  # Breaks the actor.
            with pytest.raises(
                MailboxTimeout, match=r"within 0\.05 s: its actor had broken"
            ) as caught:
                await runtime.ask(account, "42", Deposit(5), timeout_s=0.05)
            assert caught.value.waited_for == "settling"
            journal.commit()
        # The open was durable; the timed-out deposit never ran.
        assert await runtime.state(account, "42") == Account("ada")
        assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_a_timeout_ends_the_wait_for_a_restarts_backoff() -> None:
    clock = ManualClock()
    policy = RestartPolicy(backoff_initial_s=30.0, backoff_max_s=30.0)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as runtime,
    ):
        await runtime.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode())
        with pytest.raises(
            MailboxTimeout, match=r"within 0\.05 s: it was waiting out its restart backoff"
        ) as caught:
            await runtime.ask(account, "42", Deposit(5), timeout_s=0.05)
        assert caught.value.waited_for == "restart"
        assert clock.sleeps == [30.0]
        clock.advance(30.0)
        await runtime.ask(account, "42", Deposit(7))
        assert await runtime.state(account, "42") == Account("ada", 7, 1)
        assert runtime.statistics().restarts == 1


@pytest.mark.anyio
async def test_a_caller_sleeping_out_a_restarts_backoff_fails_when_the_runtime_shuts_down() -> None:
    clock = ManualClock()  # Its sleeps end only when the test moves it: never, here.
    policy = RestartPolicy(backoff_initial_s=30.0, backoff_max_s=30.0)
    refused: list[RuntimeClosed] = []

    async def deposit(runtime: Runtime) -> None:
        try:
            await runtime.ask(account, "42", Deposit(5))
        except RuntimeClosed as error:
            refused.append(error)

    async with MemoryJournal() as journal:
        with anyio.fail_after(5):
            async with (
                anyio.create_task_group() as tg,
                Runtime(journal, clock=clock, restart_policy=policy) as runtime,
            ):
                await runtime.ask(account, "42", Open("ada"))
                with pytest.raises(RuntimeError, match="boom"):
                    await runtime.ask(account, "42", Explode())
                tg.start_soon(deposit, runtime)
                await anyio.wait_all_tasks_blocked()
                assert clock.sleeps == [30.0]
        # Failed by the shutdown, not left sleeping after the runtime is gone.
        assert len(refused) == 1
        assert "shutting down or has shut down" in str(refused[0])
        assert journal.statistics().events == 1


# -- snapshots that cannot be taken ------------------------------------------------------------


@pytest.mark.anyio
async def test_a_state_that_cannot_be_encoded_is_logged_and_not_snapshotted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(state: Account) -> Any:
        raise ValueError("not today")

    snapshotted = make_account(snapshot_every=2, encode_state=refuse)
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        with caplog.at_level(logging.ERROR, logger="eventfold.runtime"):
            await runtime.ask(snapshotted, "42", Open("ada"))
            await runtime.ask(snapshotted, "42", Deposit(5))
            await runtime.ask(snapshotted, "42", Deposit(6))
        assert "no snapshot of 'account-42' taken: encode_state raised" in caplog.text
        assert await journal.load_snapshot("account-42") is None
        assert await runtime.state(snapshotted, "42") == Account("ada", 11, 2)
        assert runtime.statistics().snapshots == 0
