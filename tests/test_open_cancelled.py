"""An opening whose caller is cancelled natively while the worker thread still opens the files
(a long compaction of the snapshot file, say) leaves nothing open: the caller waits for the
thread, closes what it opened and gives the lock back before its cancellation goes on, so the
journal can be opened again at once in the same process.

A native asyncio cancellation (``asyncio.timeout``, ``Task.cancel``, a sibling failing in an
``asyncio.TaskGroup``) does not wait for the thread as an anyio cancel scope does: the caller
has to. Each cancellation here lands at a chosen point of the thread's work
(``NativeCancellations``), so each test fails the same way every time if the caller leaves
before the thread's work is settled.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from journals import FileJournal, NewEvent
from journals import _file_handoff as handoff
from journals import _snapshot_retention as retention
from journals._file_handoff import open_in_thread
from journals._file_open import OpenedJournal, open_journal_files
from journals.testing import FileIO

from .native_cancellation import LockWatch, NativeCancellations

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def _fill(directory: Path) -> None:
    async with FileJournal(directory, snapshot_compaction=False) as journal:
        for version in range(1, 21):
            await journal.append("s", [NewEvent("E", {})], expected_version=version - 1)
            await journal.save_snapshot("s", version, {"at": version})


async def _reopen(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.version == 20


def _open_files(directory: Path, file_io: FileIO) -> OpenedJournal:
    return open_journal_files(
        str(directory), file_io, key=None, durable=True, snapshot_compaction=True
    )


async def _open_until_the_deadline_passes_in_the_compaction(
    directory: Path, watch: LockWatch
) -> None:
    async with asyncio.timeout(None) as deadline:
        watch.on_rename = NativeCancellations([lambda: deadline.reschedule(0)]).land
        await FileJournal(directory, file_io=watch).__aenter__()
    pytest.fail("the opening's deadline did not pass")


async def test_an_opening_whose_deadline_passes_while_it_compacts_is_closed_before_it_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(tmp_path)
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)  # Opening compacts.
    watch = LockWatch("snapshots.dat.tmp")
    with pytest.raises(TimeoutError):
        await _open_until_the_deadline_passes_in_the_compaction(tmp_path, watch)
    # The compaction went on and the opening was closed before the timeout came out.
    assert watch.unlocked.is_set()
    async with FileJournal(tmp_path) as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.version == 20
        assert journal.recovery_report.snapshot_compaction is None  # Compacted already.


async def test_an_opening_cancelled_before_its_thread_hands_over_is_closed_by_its_caller(
    tmp_path: Path,
) -> None:
    """The cancellation lands while the thread still holds what it opened: the caller waits
    for it and closes it."""
    await _fill(tmp_path)
    watch = LockWatch("snapshots.dat.tmp")
    cancel = NativeCancellations()

    def open_then_cancel_the_caller() -> OpenedJournal:
        opened = _open_files(tmp_path, watch)
        cancel.land()
        return opened

    with pytest.raises(asyncio.CancelledError):
        await open_in_thread(open_then_cancel_the_caller, watch)
    assert watch.unlocked.is_set()
    assert cancel.task.uncancel() == 0
    await _reopen(tmp_path)


async def test_an_opening_cancelled_once_its_thread_is_done_is_closed_by_its_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread handed over what it opened, but the caller was cancelled before it resumed
    to take it: the caller closes it."""
    await _fill(tmp_path)
    watch = LockWatch("snapshots.dat.tmp")
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    give = handoff._Handoff.give

    def give_then_cancel_the_caller(self: handoff._Handoff, opened: OpenedJournal) -> bool:
        given = give(self, opened)
        # Scheduled before the thread's answer is: the caller is cancelled first.
        loop.call_soon_threadsafe(task.cancel)
        return given

    monkeypatch.setattr(handoff._Handoff, "give", give_then_cancel_the_caller)
    with pytest.raises(asyncio.CancelledError):
        await open_in_thread(lambda: _open_files(tmp_path, watch), watch)
    assert watch.unlocked.is_set()
    assert task.uncancel() == 0
    monkeypatch.undo()
    await _reopen(tmp_path)


async def test_an_opening_cancelled_before_its_thread_began_opens_nothing(
    tmp_path: Path,
) -> None:
    await _fill(tmp_path)
    opened: list[OpenedJournal] = []

    def open_files() -> OpenedJournal:
        opened.append(_open_files(tmp_path, FileIO()))
        return opened[0]

    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await open_in_thread(open_files, FileIO())
    assert task.uncancel() == 0
    await _reopen(tmp_path)  # After a thread that had been handed the opening would open it.
    assert opened == []


async def test_an_opening_whose_coroutine_is_closed_is_closed_by_its_thread(
    tmp_path: Path,
) -> None:
    """A coroutine closed while it waits (its event loop was closed with it pending) cannot
    wait for the thread: the thread closes what it opened."""
    await _fill(tmp_path)
    watch = LockWatch("snapshots.dat.tmp")
    began, go = threading.Event(), threading.Event()

    def open_files() -> OpenedJournal:
        began.set()
        assert go.wait(10)
        return _open_files(tmp_path, watch)

    opening = open_in_thread(open_files, watch)
    # Driven by hand up to its wait for the thread's answer.
    while not isinstance(opening.send(None), asyncio.Future):
        pass
    assert began.wait(10)
    opening.close()
    go.set()
    assert await asyncio.to_thread(watch.unlocked.wait, 10)
    await _reopen(tmp_path)
