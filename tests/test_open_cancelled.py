"""An opening whose caller is cancelled while the worker thread still opens the files (a long
compaction of the snapshot file, say) leaves nothing open: the thread closes what it opened
and gives the lock back, so the journal can be opened again in the same process.

A native asyncio cancellation (``asyncio.timeout``, ``Task.cancel``, a sibling failing in an
``asyncio.TaskGroup``) does not wait for the thread as an anyio cancel scope does.
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from journals import FileJournal, NewEvent
from journals import _snapshot_retention as retention
from journals._file_handoff import open_in_thread
from journals._file_open import OpenedJournal, open_journal_files
from journals.testing import FileIO

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


class HeldRename(FileIO):
    """Calls ``on_rename`` at the compaction's rename, then holds it until ``go`` is set;
    sets ``unlocked`` when the journal's lock is given back."""

    def __init__(self) -> None:
        self.on_rename: Callable[[], object] = lambda: None
        self.go = threading.Event()
        self.unlocked = threading.Event()
        self.lock_fd = -1

    def replace(self, source: str, target: str) -> None:
        if source.endswith("snapshots.dat.tmp"):
            self.on_rename()
            assert self.go.wait(10)
        super().replace(source, target)

    def flock(self, fd: int, operation: int) -> None:
        super().flock(fd, operation)
        if operation & fcntl.LOCK_EX:
            self.lock_fd = fd

    def close(self, fd: int) -> None:
        super().close(fd)
        if fd == self.lock_fd:
            self.unlocked.set()  # Closing the lock file gives the lock back.


async def _fill(directory: Path) -> None:
    async with FileJournal(directory, snapshot_compaction=False) as journal:
        for version in range(1, 21):
            await journal.append("s", [NewEvent("E", {})], expected_version=version - 1)
            await journal.save_snapshot("s", version, {"at": version})


async def _open_cancelled_at_the_rename(directory: Path) -> HeldRename:
    """Open the journal in ``directory``; a deadline passes while its thread is held at the
    compaction's rename. Answers the file layer, still holding it."""
    loop = asyncio.get_running_loop()
    held = HeldRename()
    try:
        async with asyncio.timeout(None) as deadline:
            held.on_rename = lambda: loop.call_soon_threadsafe(deadline.reschedule, 0)
            await FileJournal(directory, file_io=held).__aenter__()
    except TimeoutError:
        return held
    raise AssertionError("the opening was not cancelled")


async def test_an_opening_cancelled_while_it_compacts_leaves_the_journal_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(tmp_path)
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)  # Opening compacts.
    held = await _open_cancelled_at_the_rename(tmp_path)
    held.go.set()
    # The thread, left alone, finishes the opening and closes what it opened.
    assert await asyncio.to_thread(held.unlocked.wait, 10)
    async with FileJournal(tmp_path) as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.version == 20
        assert journal.recovery_report.snapshot_compaction is None  # Compacted already.


async def test_an_opening_cancelled_once_its_thread_is_done_is_closed_by_its_caller(
    tmp_path: Path,
) -> None:
    """The thread handed over what it opened, but the caller was cancelled before it resumed
    to take it: the caller closes it."""
    await _fill(tmp_path)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    file_io = FileIO()

    def open_then_cancel_the_caller() -> OpenedJournal:
        opened = open_journal_files(
            str(tmp_path), file_io, key=None, durable=True, snapshot_compaction=True
        )
        # Scheduled before the thread's answer is: the caller is cancelled first.
        loop.call_soon_threadsafe(task.cancel)
        return opened

    with pytest.raises(asyncio.CancelledError):
        await open_in_thread(open_then_cancel_the_caller, file_io)
    task.uncancel()
    async with FileJournal(tmp_path) as journal:  # The lock was given back.
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.version == 20
