"""The scope around ``async with Runtime(...)`` is cancelled (``move_on_after``, a signal handler).

The body and its callers are cancelled; the runtime's own tasks are not: leaving still delivers
what ``tell_nowait`` accepted, waits for commands in flight up to ``shutdown_timeout_s`` and logs
what it gives up on, and cleanup in the body under a shielded scope finds the runtime working.
Then the cancellation propagates.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from journals import MemoryJournal
from runtime import Aggregate, CommandResult, MailboxTimeout, Runtime, RuntimeClosed

from .test_runtime_bank import (
    EVENTS,
    Account,
    Command,
    Deposit,
    Event,
    Open,
    account,
    evolve,
    make_account,
)
from .test_runtime_manual_journal import ManualJournal

# Shutdown's waits are shielded: one that wrongly waits out its bound is seen only once the
# bound has passed, so the tests keep it short.
SHUTDOWN_TIMEOUT_S = 2.0


@pytest.fixture(params=[False, True], ids=["append", "start_append"])
def starts(request: pytest.FixtureRequest) -> bool:
    """Whether the journal places appends through ``start_append`` (no coroutine each)."""
    return bool(request.param)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.anyio
async def test_commands_told_before_an_outer_cancellation_are_still_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    left_normally = False
    async with MemoryJournal() as journal:
        with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 3), anyio.CancelScope() as outer:
            async with Runtime(
                journal, mailbox_bound=2, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S
            ) as runtime:
                runtime.tell_nowait(account, "42", Open("ada"))
                for _ in range(9):
                    runtime.tell_nowait(account, "42", Deposit(1))
                outer.cancel()  # a SIGTERM handler, say, as the commands are accepted
                await anyio.sleep_forever()  # the body itself is cancelled: it is not shielded
            left_normally = True
        assert outer.cancelled_caught
        assert not left_normally, "the cancellation did not propagate out of the runtime"
        assert _warnings(caplog) == []
        async with Runtime(journal) as runtime:
            assert await runtime.state(account, "42") == Account("ada", 9, 9)


@pytest.mark.anyio
async def test_commands_an_outer_cancellation_leaves_undelivered_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = ManualJournal(start_appends=True)  # never commits within the shutdown bound
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    with anyio.fail_after(5), anyio.CancelScope() as outer:
        async with Runtime(journal, mailbox_bound=2, shutdown_timeout_s=0.05) as runtime:
            runtime.tell_nowait(account, "42", Open("ada"))
            for _ in range(9):
                runtime.tell_nowait(account, "42", Deposit(1))
            await anyio.wait_all_tasks_blocked()
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    messages = _warnings(caplog)
    # Two wait for durability (the mailbox's bound), one waits for room as it is being
    # delivered and seven are still in the outbox: as on a normal exit, not silently dropped.
    assert any(
        level == logging.ERROR and text.startswith("8 command(s) accepted by tell_nowait")
        for level, text in messages
    ), messages
    assert any(
        level == logging.WARNING and text.startswith("2 told command(s) were still in flight")
        for level, text in messages
    ), messages


@pytest.mark.anyio
async def test_an_ask_waiting_for_room_in_shielded_cleanup_times_out_at_its_deadline() -> None:
    journal = ManualJournal(start_appends=True)
    with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 5), anyio.CancelScope() as outer:
        async with Runtime(
            journal, mailbox_bound=1, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S
        ) as runtime:
            try:
                outer.cancel()
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    async with anyio.create_task_group() as cleanup:
                        cleanup.start_soon(runtime.ask, account, "42", Open("ada"))  # the slot
                        await anyio.wait_all_tasks_blocked()
                        with (
                            anyio.fail_after(2),
                            pytest.raises(MailboxTimeout, match="was not executed"),
                        ):
                            await runtime.ask(account, "42", Deposit(5), timeout_s=0.05)
                        journal.commit()
    assert outer.cancelled_caught
    assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_an_abandoned_append_is_not_rebuilt_over_after_an_outer_cancellation(
    starts: bool,
) -> None:
    journal = ManualJournal(start_appends=starts)
    answers: dict[str, Any] = {}

    async def ask(name: str, command: Any) -> None:
        try:
            answers[name] = await runtime.ask(account, "42", command)
        except Exception as error:
            answers[name] = error

    with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 5), anyio.CancelScope() as outer:
        async with Runtime(journal, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S) as runtime:
            try:
                async with anyio.create_task_group() as callers:
                    callers.start_soon(runtime.ask, account, "42", Open("ada"))
                    await anyio.wait_all_tasks_blocked()
                    assert journal.pending == 1
                    outer.cancel()  # the caller goes away; its append is in the log
                    await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    async with anyio.create_task_group() as cleanup:
                        cleanup.start_soon(ask, "deposit", Deposit(5))
                        await anyio.wait_all_tasks_blocked()
                        # Decided against the opening, whose outcome is not known yet.
                        assert answers == {}
                        journal.commit()  # it lands after all
                    answers["state"] = await runtime.state(account, "42")
                    answers["activations"] = runtime.statistics().activations
    assert outer.cancelled_caught
    assert answers["deposit"].version == 2, answers["deposit"]
    assert answers["state"] == Account("ada", 5, 1)
    assert answers["activations"] == 1  # never rebuilt while the opening might still land


@pytest.mark.anyio
async def test_tell_nowait_works_in_shielded_cleanup_and_is_refused_once_shutdown_began() -> None:
    journal = ManualJournal(start_appends=True)
    left_body = anyio.Event()
    refused: list[BaseException] = []

    async def during_shutdown() -> None:
        await left_body.wait()  # the runtime's exit has begun: it waits for the told command
        try:
            runtime.tell_nowait(account, "7", Open("bob"))
        except RuntimeClosed as error:
            refused.append(error)
        try:
            await runtime.ask(account, "7", Open("bob"))
        except RuntimeClosed as error:
            refused.append(error)
        journal.commit()

    async with anyio.create_task_group() as app:
        with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 5), anyio.CancelScope() as outer:
            async with Runtime(journal, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S) as runtime:
                try:
                    outer.cancel()
                    await anyio.sleep_forever()
                finally:
                    with anyio.CancelScope(shield=True):
                        runtime.tell_nowait(account, "42", Open("ada"))  # accepted, delivered
                        await anyio.wait_all_tasks_blocked()
                        assert journal.pending == 1
                        app.start_soon(during_shutdown)
                        left_body.set()
        assert outer.cancelled_caught
    assert len(refused) == 2, refused
    assert all("the runtime is shutting down or has shut down" in str(e) for e in refused)
    assert [event.stream_id for event in journal.log] == ["account-42"]


class _Interrupt(BaseException):
    """A BaseException from user code, as KeyboardInterrupt would be."""


def _interrupt(state: Account, command: Command) -> list[Event]:
    raise _Interrupt("stop")


interrupting = Aggregate("interrupting", Account(), _interrupt, evolve, events=EVENTS)


@pytest.mark.anyio
async def test_a_base_exception_in_a_told_command_ends_the_runtime_in_one_group() -> None:
    # The runtime's tasks run in a task group of their own (shielded from the scope around
    # the runtime); a failure there still cancels the body and comes out of ``async with``
    # wrapped once, not in a group nested in a group.
    left_normally = False

    async def run() -> None:
        nonlocal left_normally
        async with MemoryJournal() as journal, Runtime(journal) as runtime:
            await runtime.tell(interrupting, "1", Deposit(1))
            await anyio.sleep_forever()  # cancelled by the failure
        left_normally = True

    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as caught:
        await run()
    assert not left_normally
    [failure] = caught.value.exceptions
    assert isinstance(failure, _Interrupt)


@pytest.mark.anyio
async def test_a_command_answered_after_the_runtimes_tasks_failed_is_answered_as_it_went() -> None:
    # The snapshot writer had ended with the runtime's tasks, and queueing the snapshot the
    # command made due raised BrokenResourceError to a caller whose events were durable.
    every_one = make_account(snapshot_every=1)
    journal = ManualJournal(start_appends=True)
    answers: list[object] = []

    async def ask_outside_the_body(runtime: Runtime) -> None:
        try:
            answers.append(await runtime.ask(every_one, "42", Open("ada")))
        except Exception as error:
            answers.append(error)

    async def commit_once_all_wait() -> None:
        await anyio.wait_all_tasks_blocked()  # the runtime's tasks have failed by now
        journal.commit()

    runtime = Runtime(journal)

    async def run() -> None:
        async with anyio.create_task_group() as app, runtime:
            app.start_soon(ask_outside_the_body, runtime)
            await anyio.wait_all_tasks_blocked()
            assert journal.pending == 1
            await runtime.tell(interrupting, "1", Deposit(1))
            app.start_soon(commit_once_all_wait)
            await anyio.sleep_forever()  # cancelled by the failure

    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup):
        await run()
    [answer] = answers
    assert isinstance(answer, CommandResult), repr(answer)
    assert answer.version == 1
    # Not queued: counted, as a snapshot the queue has no room for.
    assert runtime.statistics().snapshots_skipped == 1


@pytest.mark.anyio
async def test_a_single_told_command_and_a_single_queued_one_left_at_shutdown_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One of each, not several: the first command holds the only mailbox slot, waiting for
    # durability, and the second waits for room as it is being delivered.
    journal = ManualJournal(start_appends=True)  # never commits within the shutdown bound
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    with anyio.fail_after(5):
        async with Runtime(journal, mailbox_bound=1, shutdown_timeout_s=0.05) as runtime:
            runtime.tell_nowait(account, "42", Open("ada"))
            runtime.tell_nowait(account, "42", Deposit(1))
            await anyio.wait_all_tasks_blocked()
    messages = _warnings(caplog)
    assert any(
        level == logging.ERROR and text.startswith("1 command(s) accepted by tell_nowait")
        for level, text in messages
    ), messages
    assert any(
        level == logging.WARNING and text.startswith("1 told command(s) were still in flight")
        for level, text in messages
    ), messages
    assert runtime.statistics().outbox_undelivered == 1
