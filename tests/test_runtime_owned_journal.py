"""A journal the runtime owns (``owns_journal=True``) lives and ends with the runtime's tasks.

Cancelling the scope around ``async with Runtime(...)`` does not stop its committer: commands
in flight and told commands are still committed during the bounded shutdown, then the journal
is flushed and closed before ``async with`` is left. Opening errors still come out of
``async with Runtime(...)`` as themselves, leaving no task behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import anyio
import pytest
import trio

from journals import (
    FileJournal,
    Journal,
    JournalClosed,
    JournalCorrupted,
    JournalLocked,
    MemoryJournal,
    NewEvent,
)
from journals.testing import FileIO
from runtime import CommandResult, Runtime, RuntimeClosed

from .journal_doubles import STALL_LIMIT_S, SlowActivations, StallingSnapshots, until_stalled
from .test_runtime_bank import Account, Deposit, Event, Open, account, make_account
from .test_runtime_outer_cancellation import _Interrupt, interrupting

# Shutdown's waits are shielded: one that wrongly waits out its bound is seen only once the
# bound has passed, so the tests keep it short.
SHUTDOWN_TIMEOUT_S = 2.0
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@pytest.fixture(params=["memory", "file"])
def make_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Journal]:
    """A new journal of the kind under test each call; a FileJournal on one directory."""
    if request.param == "memory":
        return MemoryJournal
    return lambda: FileJournal(tmp_path / "journal")


def _task_count(backend: str) -> int:
    """Tasks alive in the event loop now."""
    if backend == "trio":

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(
                count(child) for nursery in task.child_nurseries for child in nursery.child_tasks
            )

        root = trio.lowlevel.current_root_task()
        assert root is not None
        return count(root)
    return len(asyncio.all_tasks())


async def _refuses_appends(journal: Journal) -> None:
    with pytest.raises(JournalClosed, match="closed"):
        await journal.append("other", [NewEvent("x", {})], expected_version=None)


@pytest.mark.anyio
async def test_an_owned_journal_commits_told_commands_after_an_outer_cancellation(
    make_journal: Callable[[], Journal],
) -> None:
    journal = make_journal()
    left_normally = False
    with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 3), anyio.CancelScope() as outer:
        async with Runtime(
            journal, mailbox_bound=2, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, owns_journal=True
        ) as runtime:
            runtime.tell_nowait(account, "42", Open("ada"))
            for _ in range(9):
                runtime.tell_nowait(account, "42", Deposit(1))
            outer.cancel()  # a SIGTERM handler, say, as the commands are accepted
            await anyio.sleep_forever()
        left_normally = True
    assert outer.cancelled_caught
    assert not left_normally, "the cancellation did not propagate out of the runtime"
    statistics = runtime.statistics()
    assert (statistics.append_failures, statistics.journal.events) == (0, 10)
    await _refuses_appends(journal)  # closed before async with was left
    if isinstance(journal, FileJournal):  # durable: it is all there on reopening
        async with FileJournal(journal.path) as reopened, Runtime(reopened) as runtime:
            assert await runtime.state(account, "42") == Account("ada", 9, 9)


@pytest.mark.anyio
async def test_an_owned_journal_answers_asks_in_flight_and_in_cleanup_after_an_outer_cancellation(
    make_journal: Callable[[], Journal],
) -> None:
    journal = make_journal()
    answers: dict[str, CommandResult[Event] | BaseException] = {}

    async def ask(name: str, command: Any) -> None:
        try:
            answers[name] = await runtime.ask(account, "42", command)
        except BaseException as error:
            answers[name] = error
            raise

    with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 3), anyio.CancelScope() as outer:
        async with Runtime(
            journal, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, owns_journal=True
        ) as runtime:
            try:
                async with anyio.create_task_group() as callers:
                    callers.start_soon(ask, "open", Open("ada"))
                    await anyio.wait_all_tasks_blocked()
                    outer.cancel()  # the caller is cancelled; its append is in the journal
                    await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await ask("cleanup", Deposit(5))
    assert outer.cancelled_caught
    cleanup = answers["cleanup"]
    assert isinstance(cleanup, CommandResult), cleanup
    assert cleanup.version == 2  # decided after the opening, which was committed
    assert runtime.statistics().journal.events == 2
    await _refuses_appends(journal)
    if isinstance(journal, FileJournal):
        async with FileJournal(journal.path) as reopened, Runtime(reopened) as runtime:
            assert await runtime.state(account, "42") == Account("ada", 5, 1)


@pytest.mark.anyio
async def test_an_owned_journal_is_flushed_and_closed_when_async_with_is_left(
    make_journal: Callable[[], Journal], anyio_backend: str
) -> None:
    journal = make_journal()
    tasks_before = _task_count(anyio_backend)
    async with Runtime(journal, owns_journal=True) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        runtime.tell_nowait(account, "42", Deposit(3))
    assert _task_count(anyio_backend) == tasks_before
    assert runtime.statistics().journal.events == 2
    await _refuses_appends(journal)
    if isinstance(journal, FileJournal):  # its lock is released: it opens again at once
        async with FileJournal(journal.path) as reopened:
            assert await reopened.stream_version("account-42") == 2


@pytest.mark.anyio
@pytest.mark.parametrize("past", [{"version": 1}, {"version": 0}, {"at": END_OF_TIME}])
async def test_state_at_on_an_owned_journal_not_open_raises_runtime_closed_as_state_does(
    make_journal: Callable[[], Journal], past: dict[str, Any]
) -> None:
    message = r"the runtime owns its journal \(owns_journal=True\) and the journal is not open"
    journal = make_journal()
    runtime = Runtime(journal, owns_journal=True)
    with pytest.raises(RuntimeClosed, match=message):
        await runtime.state_at(account, "42", **past)
    async with runtime:
        await runtime.ask(account, "42", Open("ada"))
        assert await runtime.state_at(account, "42", version=1) == Account("ada")
    with pytest.raises(RuntimeClosed, match=message):
        await runtime.state_at(account, "42", **past)
    with pytest.raises(RuntimeClosed, match="shut down"):
        await runtime.state(account, "42")


@pytest.mark.anyio
async def test_state_at_reads_a_journal_the_caller_opened_before_and_after_the_runtime(
    make_journal: Callable[[], Journal],
) -> None:
    async with make_journal() as journal:
        runtime = Runtime(journal)
        assert await runtime.state_at(account, "42", at=END_OF_TIME) == account.initial
        async with runtime:
            await runtime.ask(account, "42", Open("ada"))
        assert await runtime.state_at(account, "42", version=1) == Account("ada")


@pytest.mark.anyio
async def test_state_at_an_owned_journal_closed_under_its_read_raises_runtime_closed() -> None:
    journal = SlowActivations()  # Its reads wait for the gate.
    errors: list[BaseException] = []

    async def read(runtime: Runtime) -> None:
        try:
            await runtime.state_at(account, "42", version=1)
        except RuntimeClosed as error:
            errors.append(error)

    async with anyio.create_task_group() as tg:
        async with Runtime(journal, owns_journal=True) as runtime:
            tg.start_soon(read, runtime)
            await anyio.wait_all_tasks_blocked()  # Its read has begun, and waits.
        journal.gate.set()  # It reads on from the journal the exit closed.
    assert len(errors) == 1
    assert "owns its journal (owns_journal=True)" in str(errors[0])
    assert isinstance(errors[0].__cause__, JournalClosed)


@pytest.mark.anyio
async def test_an_error_of_the_body_comes_out_unwrapped_and_the_owned_journal_is_closed(
    make_journal: Callable[[], Journal],
) -> None:
    journal = make_journal()

    async def run() -> None:
        async with Runtime(journal, owns_journal=True) as runtime:
            await runtime.ask(account, "42", Open("ada"))
            raise LookupError("the body's own error")

    with pytest.raises(LookupError, match="the body's own error"):
        await run()
    await _refuses_appends(journal)


@pytest.mark.anyio
async def test_a_failing_runtime_task_ends_the_runtime_in_one_group_and_closes_the_journal(
    make_journal: Callable[[], Journal],
) -> None:
    journal = make_journal()

    async def run() -> None:
        async with Runtime(journal, owns_journal=True) as runtime:
            await runtime.ask(account, "42", Open("ada"))
            await runtime.tell(interrupting, "1", Deposit(1))
            await anyio.sleep_forever()  # cancelled by the failure

    with anyio.fail_after(5), pytest.raises(BaseExceptionGroup) as caught:
        await run()
    [failure] = caught.value.exceptions
    assert isinstance(failure, _Interrupt)
    await _refuses_appends(journal)
    if isinstance(journal, FileJournal):
        async with FileJournal(journal.path) as reopened:
            assert await reopened.stream_version("account-42") == 1


async def _refused_on_entry(runtime: Runtime, anyio_backend: str) -> BaseException:
    """What entering ``runtime`` raises; no task is left behind, no cancel scope left open."""
    tasks_before = _task_count(anyio_backend)
    # A task group left entered would make leaving this scope fail (scopes must nest).
    with anyio.fail_after(5):
        try:
            async with runtime:
                pytest.fail("the runtime started")
        except Exception as error:
            refusal = error
        else:
            pytest.fail("entering the runtime raised nothing")
    assert _task_count(anyio_backend) == tasks_before
    with pytest.raises(RuntimeError, match="entered only once"):
        await runtime.__aenter__()
    return refusal


def _remove_segments(directory: Path) -> None:
    for segment in directory.glob("*.log"):
        segment.unlink()


@pytest.mark.anyio
async def test_a_corrupted_journal_is_refused_by_async_with_runtime_as_itself(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", [NewEvent("E", {})], expected_version=0)
    _remove_segments(tmp_path)
    refusal = await _refused_on_entry(
        Runtime(FileJournal(tmp_path), owns_journal=True), anyio_backend
    )
    assert isinstance(refusal, JournalCorrupted), repr(refusal)
    assert "no segment files" in str(refusal)


@pytest.mark.anyio
async def test_a_locked_journal_is_refused_by_async_with_runtime_as_itself(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with FileJournal(tmp_path) as holder:
        refusal = await _refused_on_entry(
            Runtime(FileJournal(tmp_path), owns_journal=True), anyio_backend
        )
        assert isinstance(refusal, JournalLocked), repr(refusal)
        assert "already open in this process" in str(refusal)
        await holder.append("s", [NewEvent("E", {})], expected_version=0)  # still its own


@pytest.mark.anyio
async def test_a_closed_memory_journal_is_refused_by_async_with_runtime_as_itself(
    anyio_backend: str,
) -> None:
    journal = MemoryJournal()
    async with journal:
        pass
    refusal = await _refused_on_entry(Runtime(journal, owns_journal=True), anyio_backend)
    assert isinstance(refusal, JournalClosed), repr(refusal)
    assert "was closed; create a new one" in str(refusal)


class _InterruptedWhileOpening(MemoryJournal):
    async def __aenter__(self) -> Self:
        raise _Interrupt("stopped while opening")


@pytest.mark.anyio
async def test_a_base_exception_while_opening_an_owned_journal_comes_out_as_itself(
    anyio_backend: str,
) -> None:
    # Not only errors: an interrupt while the journal opens leaves the task group too, or
    # the caller's event loop is left with a task group half entered.
    tasks_before = _task_count(anyio_backend)
    with anyio.fail_after(5), pytest.raises(_Interrupt, match="stopped while opening"):
        async with Runtime(_InterruptedWhileOpening(), owns_journal=True):
            pytest.fail("the runtime started")
    assert _task_count(anyio_backend) == tasks_before
    async with anyio.create_task_group() as task_group:  # The event loop still works.
        task_group.start_soon(anyio.sleep, 0)


@pytest.mark.anyio
async def test_a_caller_cancelled_as_it_enters_still_gets_the_owned_journal_closed(
    make_journal: Callable[[], Journal], anyio_backend: str
) -> None:
    journal = make_journal()
    tasks_before = _task_count(anyio_backend)
    body_ran = False
    with anyio.fail_after(5), anyio.CancelScope() as outer:
        outer.cancel()
        async with Runtime(journal, owns_journal=True):
            body_ran = True
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert body_ran  # opening is not interrupted; the body is cancelled at its first checkpoint
    assert _task_count(anyio_backend) == tasks_before
    await _refuses_appends(journal)
    if isinstance(journal, FileJournal):  # its lock is released
        async with FileJournal(journal.path):
            pass


@pytest.mark.anyio
async def test_leaving_with_an_owned_journal_waits_for_a_stalled_snapshot_write(
    tmp_path: Path,
) -> None:
    # The exit returns only once the journal is closed, and a file is not closed under a
    # write in progress: a snapshot write that the disk holds up holds up the exit, past
    # shutdown_timeout_s, until it ends.
    file_io = StallingSnapshots()
    every_two = make_account(snapshot_every=2)
    stall_s = 0.5
    order: list[str] = []

    async def release_later() -> None:
        await until_stalled(file_io)
        await anyio.sleep(stall_s)  # ten times the shutdown's bound: an exit that did not wait
        order.append("released")  # for the write has returned by now
        file_io.release(fail=False)

    with anyio.fail_after(STALL_LIMIT_S / 3):
        async with anyio.create_task_group() as releaser:
            releaser.start_soon(release_later)
            journal = FileJournal(tmp_path / "journal", file_io=file_io)
            async with Runtime(journal, shutdown_timeout_s=0.05, owns_journal=True) as runtime:
                await runtime.ask(every_two, "1", Open("ada"))
                await runtime.ask(every_two, "1", Deposit(5))  # version 2: a snapshot is queued
                await until_stalled(file_io)
            order.append("left")
    assert order == ["released", "left"]
    await _refuses_appends(journal)
    async with FileJournal(tmp_path / "journal") as reopened:
        snapshot = await reopened.load_snapshot("account-1")
        assert snapshot is not None
        assert snapshot.version == 2


class StallingCommits(FileIO):
    """Once ``armed``, holds every durable write of a batch until ``release``."""

    def __init__(self) -> None:
        self.armed = False
        self.stalled = threading.Event()
        self._released = threading.Event()

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        if self.armed:
            self.stalled.set()
            assert self._released.wait(STALL_LIMIT_S), "the test did not release the write"
        super().write_durably(fd, data, offset)

    def release(self) -> None:
        self._released.set()


@pytest.mark.anyio
async def test_leaving_with_an_owned_journal_waits_for_a_stalled_commit_and_answers_it(
    tmp_path: Path,
) -> None:
    # The bounded wait gives up on the ask whose batch the disk holds up; closing the
    # journal then waits for that write and its sync, and the ask is answered once durable.
    file_io = StallingCommits()
    answers: dict[str, CommandResult[Event]] = {}
    stall_s = 0.5

    async def deposit() -> None:
        answers["deposit"] = await runtime.ask(account, "1", Deposit(5))

    order: list[str] = []

    async def release_later() -> None:
        assert await anyio.to_thread.run_sync(file_io.stalled.wait, 10), "no write began"
        await anyio.sleep(stall_s)  # ten times the shutdown's bound: an exit that did not wait
        assert answers == {}, "answered before its batch was durable"
        order.append("released")  # for the write has returned by now
        file_io.release()

    with anyio.fail_after(STALL_LIMIT_S / 3):
        async with anyio.create_task_group() as app:
            journal = FileJournal(tmp_path / "journal", file_io=file_io)
            async with Runtime(journal, shutdown_timeout_s=0.05, owns_journal=True) as runtime:
                await runtime.ask(account, "1", Open("ada"))
                file_io.armed = True
                app.start_soon(release_later)
                app.start_soon(deposit)
                await anyio.to_thread.run_sync(file_io.stalled.wait, 10)
            order.append("left")
    assert order == ["released", "left"]
    assert answers["deposit"].version == 2
    await _refuses_appends(journal)
    async with FileJournal(tmp_path / "journal") as reopened:
        assert await reopened.stream_version("account-1") == 2
