"""A journal or a runtime is closed by the task that opened it.

Its task group (the committer's, the runtime's own tasks') can only be left by the task that
entered it: closing from another task (an open in one framework hook, a close in another run
by a different task) used to fail on asyncio with a ``RuntimeError`` about cancel scopes,
leaving a FileJournal locked until the process ended, and to hang trio or end its run in
``TrioInternalError``. It is refused now before anything changes, and the task that opened it
can still close it as it should.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from journals import (
    FileJournal,
    Journal,
    JournalClosed,
    JournalOpenedInAnotherTask,
    MemoryJournal,
    NewEvent,
    NotAJournalDirectory,
)
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from journals._fileio import FileIO
from runtime import Runtime, RuntimeEnteredInAnotherTask

from .test_runtime_bank import Deposit, Open, account

JOURNAL_REFUSAL = (
    r"this (File|Memory)Journal was opened in task '.*_Holder.run' \(id \d+\) and cannot be "
    r"closed in another task, '.*' \(id \d+\): .* Nothing was done; the journal is still "
    r"open\. Open and close it in the same task, .*'async with journal:'"
)
OPENING_REFUSAL = (
    r"this (File|Memory)Journal is being opened in task 'opener' \(id \d+\) and cannot be "
    r"closed in another task, '.*' \(id \d+\): .* Nothing was done; the opening goes on, "
    r"and that task must close the journal\. Open and close it in the same task, "
)
WAIT_S = 10.0
RUNTIME_REFUSAL = (
    r"this Runtime was entered in task '.*_Holder.run' \(id \d+\) and cannot be left in "
    r"another task, '.*' \(id \d+\): .* Nothing was done; the runtime is still running\. "
    r"Enter and leave it in the same task, .*'async with Runtime\(journal\) as runtime:'"
)


@pytest.fixture(params=["memory", "file"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Journal:
    if request.param == "memory":
        return MemoryJournal()
    return FileJournal(tmp_path / "journal")


class _Holder:
    """Opens something in a task of its own, as a startup hook would, and closes it in that
    task once told to."""

    def __init__(
        self, enter: Callable[[], Awaitable[object]], leave: Callable[[], Awaitable[object]]
    ) -> None:
        self._enter, self._leave = enter, leave
        self._leave_now = anyio.Event()
        self.entered = anyio.Event()
        self.left = False

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        await self._enter()
        self.entered.set()
        task_status.started()
        await self._leave_now.wait()
        await self._leave()
        self.left = True

    def leave(self) -> None:
        self._leave_now.set()


async def _events(directory: Path) -> list[object]:
    async with FileJournal(directory) as again:
        assert again.recovery_report.torn_tails == ()
        return [event.data async for event in again.read("s")]


@pytest.mark.anyio
async def test_a_journal_closed_in_another_task_is_refused_and_stays_open(
    journal: Journal, tmp_path: Path
) -> None:
    holder = _Holder(journal.__aenter__, journal.aclose)
    async with anyio.create_task_group() as task_group:
        await task_group.start(holder.run)
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
        with pytest.raises(JournalOpenedInAnotherTask, match=JOURNAL_REFUSAL) as refused:
            await journal.aclose()
        assert isinstance(refused.value, RuntimeError)  # As the task group's error was.
        with pytest.raises(JournalOpenedInAnotherTask, match=JOURNAL_REFUSAL):
            await journal.__aexit__(None, None, None)
        # Nothing changed: appends are still committed, reads still answered.
        await journal.append("s", [NewEvent("X", 2)], expected_version=1)
        assert await journal.stream_version("s") == 2
        holder.leave()
    assert holder.left
    with pytest.raises(JournalClosed):
        await journal.append("s", [NewEvent("X", 3)], expected_version=2)
    assert journal.statistics().events == 2
    if isinstance(journal, FileJournal):
        # Closed as it should be: the clean close recorded, the lock released, nothing lost.
        assert (tmp_path / "journal" / CLEAN_CLOSE_FILE_NAME).exists()
        assert await _events(tmp_path / "journal") == [1, 2]


@pytest.mark.anyio
async def test_a_journal_closed_by_its_task_may_be_closed_again_by_any(journal: Journal) -> None:
    holder = _Holder(journal.__aenter__, journal.aclose)
    async with anyio.create_task_group() as task_group:
        await task_group.start(holder.run)
        holder.leave()
    assert holder.left
    await journal.aclose()  # Closed already: nothing to leave, so nothing to refuse.


@pytest.mark.anyio
async def test_a_journal_opened_and_closed_in_one_task_is_not_refused(journal: Journal) -> None:
    await journal.__aenter__()
    await journal.append("s", [NewEvent("X", 1)], expected_version=0)
    await journal.aclose()
    assert journal.statistics().events == 1


async def _close_while_opening(
    journal: Journal, opening: Callable[[], Awaitable[object]], go_on: Callable[[], None]
) -> None:
    """Open ``journal`` in a task named 'opener'; once ``opening`` has returned (its opening is
    held), close it from this task, which must be refused, then let the opening ``go_on``.
    The opening must complete: the journal takes an append, and is closed by its opener."""
    holder = _Holder(journal.__aenter__, journal.aclose)
    async with anyio.create_task_group() as task_group:
        opener = functools.partial(holder.run, task_status=anyio.TASK_STATUS_IGNORED)
        task_group.start_soon(opener, name="opener")
        try:
            await opening()
            with pytest.raises(JournalOpenedInAnotherTask, match=OPENING_REFUSAL):
                await journal.aclose()
        finally:
            go_on()
        await holder.entered.wait()
        # The opening was not affected: the journal is open and takes appends.
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
        holder.leave()
    assert holder.left
    with pytest.raises(JournalClosed):
        await journal.append("s", [NewEvent("X", 2)], expected_version=1)


class _SlowOpening(FileIO):
    """Holds a FileJournal's opening (in its worker thread) at the directory's lock until let
    go, as the recovery of a large journal would."""

    def __init__(self) -> None:
        self.opening = threading.Event()
        self.go_on = threading.Event()

    def flock(self, fd: int, operation: int) -> None:
        self.opening.set()
        self.go_on.wait(WAIT_S)
        super().flock(fd, operation)


@pytest.mark.anyio
async def test_a_journal_closed_in_another_task_while_it_opens_is_refused_and_opens(
    tmp_path: Path,
) -> None:
    # Let through, the close marked the journal closed under the opening, which then completed
    # with its committer's task group open and no call left that could close it: the lock
    # stayed held, and the opening task failed on leaving (cancel scopes on asyncio, trio's
    # state corrupted).
    directory = tmp_path / "journal"
    file_io = _SlowOpening()
    journal = FileJournal(directory, file_io=file_io)

    async def opening() -> None:
        assert await anyio.to_thread.run_sync(file_io.opening.wait, WAIT_S)

    await _close_while_opening(journal, opening, file_io.go_on.set)
    # Closed by its task as it should be: the clean close recorded, the lock released.
    assert (directory / CLEAN_CLOSE_FILE_NAME).exists()
    assert await _events(directory) == [1]


class _SlowStart(MemoryJournal):
    """Holds a MemoryJournal's opening while its committer starts, until let go."""

    def __init__(self) -> None:
        super().__init__()
        self.opening = anyio.Event()
        self.go_on = anyio.Event()

    async def _commit_batches(
        self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.opening.set()
        await self.go_on.wait()
        await super()._commit_batches(task_status=task_status)


@pytest.mark.anyio
async def test_a_memory_journal_closed_in_another_task_while_it_opens_is_refused_and_opens() -> (
    None
):
    # Let through, the close marked the journal closed while its committer started: the
    # opening then completed with a closed journal, which refused every append.
    journal = _SlowStart()
    await _close_while_opening(journal, journal.opening.wait, journal.go_on.set)


@pytest.mark.anyio
async def test_a_journal_whose_opening_failed_may_be_closed_by_any_task(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    journal = FileJournal(tmp_path / "file")

    async def open_it() -> None:
        with pytest.raises(NotAJournalDirectory):
            await journal.__aenter__()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(open_it)
    await journal.aclose()  # Not open: nothing to leave, so nothing to refuse.
    with pytest.raises(JournalClosed):
        await journal.__aenter__()


@pytest.mark.anyio
@pytest.mark.parametrize("owns_journal", [True, False])
async def test_a_runtime_left_in_another_task_is_refused_and_keeps_running(
    tmp_path: Path, owns_journal: bool
) -> None:
    directory = tmp_path / "journal"
    journal = FileJournal(directory)
    runtime = Runtime(journal, owns_journal=owns_journal, shutdown_timeout_s=5.0)
    holder = _Holder(runtime.__aenter__, lambda: runtime.__aexit__(None, None, None))
    async with contextlib.AsyncExitStack() as stack:
        if not owns_journal:
            await stack.enter_async_context(journal)
        async with anyio.create_task_group() as task_group:
            await task_group.start(holder.run)
            await runtime.ask(account, "a", Open("ada"))
            with pytest.raises(RuntimeEnteredInAnotherTask, match=RUNTIME_REFUSAL) as refused:
                await runtime.__aexit__(None, None, None)
            assert isinstance(refused.value, RuntimeError)
            # Nothing changed: commands are still run and answered.
            assert (await runtime.ask(account, "a", Deposit(5))).version == 2
            holder.leave()
        assert holder.left
    assert (directory / CLEAN_CLOSE_FILE_NAME).exists()
    async with FileJournal(directory) as again:
        assert again.statistics().events == 2
