"""The steps of a FileJournal's opening and closing that stand apart from its state.

``__aenter__`` refuses a journal entered before (``check_enterable``), opens its files in a
worker thread (``_file_handoff``), then starts its committer in a task group that the opening
task enters (``start_committer``); ``aclose`` lets the committer drain what is queued and
leaves that task group in the same task (``stop_committer``, after ``_opening_task`` checked
the task). Either way the journal's threads are stopped and its files closed last
(``close_journal``), shielded, so that the directory's lock is released. A native asyncio
cancellation cannot be shielded: the close then goes on through every step, each waiting for
its thread (``_thread_to_end``), and the cancellation is raised once the lock is released.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from ._committer import CommitQueue
from ._exceptions import JournalClosed
from ._file_handoff import close_files
from ._file_open import OpenedJournal
from ._file_thread import BlockingRunner, ReaderThreads
from ._fileio import FileIO
from ._thread_to_end import run_to_end


def check_enterable(*, closed: bool, is_open: bool, entered: bool) -> None:
    """The refusals MemoryJournal makes, in its words: a journal closed before it was ever
    entered stays closed (opened, its close would have been spent, and its committer's task
    group left open)."""
    if closed:
        raise JournalClosed("this FileJournal was closed; create a new one to reopen the journal")
    if is_open:
        raise JournalClosed(
            "this FileJournal is open already; enter it once and share it, or create another"
        )
    if entered:
        raise JournalClosed(
            "this FileJournal was entered before and its opening failed or is under way; "
            "create a new one to open the journal"
        )


async def start_committer(
    queue: CommitQueue, close: Callable[[], Awaitable[None]]
) -> anyio.abc.TaskGroup:
    """Enter a task group in the calling task and start the committer in it; if that fails,
    the group is left and ``close()`` closes the journal's files before the error goes on."""
    task_group = anyio.create_task_group()
    await task_group.__aenter__()
    try:
        await task_group.start(queue.run)
    except BaseException as error:
        queue.closing = True
        queue.wakeup.set()
        await task_group.__aexit__(type(error), error, error.__traceback__)
        await close()
        raise
    return task_group


async def stop_committer(
    queue: CommitQueue, task_group: anyio.abc.TaskGroup, close: Callable[[], Awaitable[None]]
) -> None:
    """The committer drains what is queued, then returns. The task group is left here, in the
    task that entered it (cancel scopes nest); ``close()`` then closes the files, shielded."""
    queue.closing = True
    queue.wakeup.set()
    try:
        await task_group.__aexit__(None, None, None)
    finally:
        await close()


async def close_journal(
    opened: OpenedJournal,
    file_io: FileIO,
    runner: BlockingRunner | None,
    readers: ReaderThreads | None,
    queue: CommitQueue | None,
) -> None:
    """Stop the writer thread and the reader threads, then close the files in a worker
    thread, shielded; a clean close is recorded if the queue settled what was written.

    Each step runs even if the one before it raised (a native cancellation, raised once that
    step's thread was done): a file is closed only once no thread uses it, and always."""
    with anyio.CancelScope(shield=True):
        try:
            if runner is not None:
                await runner.stop()
        finally:
            try:
                if readers is not None:
                    # Reads already handed over finish before their files are closed.
                    await readers.stop()
            finally:
                clean = queue is not None and queue.settled()
                await run_to_end(functools.partial(close_files, opened, file_io, clean=clean))
