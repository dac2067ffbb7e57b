"""Opening and closing a FileJournal's files in a worker thread, so that what an opening
opened is closed even when its caller stopped waiting for it.

Opening runs in a worker thread for as long as recovery and a compaction of the snapshot file
take, and nothing can stop the thread. An anyio cancel scope waits for it; so does the caller
after a native asyncio cancellation (``asyncio.timeout``, ``Task.cancel``, a failing sibling
in an ``asyncio.TaskGroup``: ``_thread_to_end``), which then closes what the thread opened
before the cancellation goes on, the directory's lock above all: the journal can be opened
again at once. A caller that cannot wait (its coroutine is closed) leaves what the thread
opens to the thread to close, or the journal could never be opened again in this process. A
``_Handoff`` decides, under a lock, which of the two owns it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._file_open import OpenedJournal, release_lock
from ._fileio import FileIO
from ._thread_to_end import run_to_end


async def open_in_thread(open_files: Callable[[], OpenedJournal], file_io: FileIO) -> OpenedJournal:
    """``open_files()`` in a worker thread; what it opened is closed (without a clean-close
    record) if the caller was cancelled, before the cancellation goes on (by the thread, if
    the caller could not wait for it)."""
    handoff = _Handoff()

    def run() -> OpenedJournal:
        opened = open_files()
        if not handoff.give(opened):
            close_files(opened, file_io, clean=False)  # No one took it.
        return opened

    try:
        return await run_to_end(run, must_run=False)
    except BaseException:
        # The thread is done (it handed over what it opened), or never began, unless this
        # coroutine is being closed and could not wait for it.
        left = handoff.refuse()
        if left is not None:
            # Close it here (a few close(2) calls and the lock's release).
            close_files(left, file_io, clean=False)
        raise


def close_files(opened: OpenedJournal, file_io: FileIO, *, clean: bool) -> None:
    """Close the journal's files, the snapshot file first (a save whose caller left may still
    be writing to it); ``clean``: record a clean close if the files hold what was written.

    Blocks (it waits for a save or a load in progress). The lock is released whatever fails
    before it: else no open in this process could take the journal again.
    """
    try:
        snapshots_size = opened.snapshots.close()
        opened.writer.close(snapshots_size=snapshots_size if clean else None)
    finally:
        try:
            opened.segment_files.close()
        finally:
            release_lock(file_io, opened.lock_fd)


class _Handoff:
    """What the opening thread opened, handed to its caller unless the caller refused first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened: OpenedJournal | None = None
        self._refused = False

    def give(self, opened: OpenedJournal) -> bool:
        """From the thread: hand ``opened`` over; False if the caller is gone (close it)."""
        with self._lock:
            if self._refused:
                return False
            self._opened = opened
            return True

    def refuse(self) -> OpenedJournal | None:
        """From the caller that leaves: answers what was handed over already (close it)."""
        with self._lock:
            self._refused = True
            opened, self._opened = self._opened, None
        return opened
