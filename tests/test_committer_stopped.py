"""What a FileJournal's appends are told when its committer stops because the task that opened
the journal was cancelled: the batch being written may be on disk, the appends queued behind it
and those waiting for room were never written, and each message says what to do."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from journals import FileJournal, JournalClosed, NewEvent

from .journal_conformance_start_append import placed
from .journal_doubles import HeldWrites

NOT_WRITTEN = "nothing of this append was written. Keep the journal open in a task that outlives"
MAYBE_WRITTEN = "may or may not be on disk. Reopen the journal and read the stream's version"


async def _events(path: Path) -> list[object]:
    async with FileJournal(path) as journal:
        return [event.data async for event in journal.read_all()]


@pytest.mark.anyio
async def test_appends_queued_or_waiting_for_room_are_told_they_were_not_written(
    tmp_path: Path,
) -> None:
    writes = HeldWrites()
    # One append per batch; the second fills the queue, the third waits for room.
    journal = FileJournal(tmp_path, batch_bytes_max=1, queue_bytes_max=100, file_io=writes)
    start = journal.start_append
    with anyio.CancelScope() as scope:
        async with journal:
            writes.released.clear()
            try:
                first = placed(start("s", [NewEvent("X", 1)], expected_version=None))
                await anyio.to_thread.run_sync(writes.entered.wait)  # Its batch is held.
                queued = placed(start("s", [NewEvent("X", "2" * 200)], expected_version=None))
                assert start("s", [NewEvent("X", 3)], expected_version=None) is None
                waiting = journal.queue_append_columns("s", ["X"], [3], expected_version=None)
                scope.cancel()  # The opener's task is cancelled: the committer stops next.
            finally:
                writes.released.set()
            await anyio.lowlevel.checkpoint()
    await first[0]
    first[1].raise_error()  # Written before the committer stopped: acknowledged.
    await queued[0]
    with pytest.raises(JournalClosed, match=NOT_WRITTEN):
        queued[1].raise_error()
    await waiting.wait()
    with pytest.raises(JournalClosed, match=NOT_WRITTEN):
        waiting.started()
    assert await _events(tmp_path) == [1]


@pytest.mark.anyio
async def test_the_batch_being_written_is_told_it_may_be_on_disk(tmp_path: Path) -> None:
    writes = HeldWrites()
    # Through anyio's worker threads a commit can be cancelled as it is handed over: the
    # committer stops with that batch in hand, and cannot know whether any of it was written.
    journal = FileJournal(
        tmp_path, batch_bytes_max=1, queue_bytes_max=1, file_io=writes, commit_thread="pool"
    )
    with anyio.CancelScope() as scope:
        async with journal:
            writes.released.clear()
            try:
                first = placed(journal.start_append("s", [NewEvent("X", 1)], expected_version=None))
                await anyio.to_thread.run_sync(writes.entered.wait)
                waiting = journal.queue_append_columns("s", ["X"], [2], expected_version=None)
                scope.cancel()
            finally:
                writes.released.set()
            await anyio.lowlevel.checkpoint()
    await first[0]
    first[1].raise_error()
    await waiting.wait()
    durable, outcome, _, _ = waiting.started()  # Placed once the first batch was committed.
    await durable
    with pytest.raises(JournalClosed, match=MAYBE_WRITTEN):
        outcome.raise_error()
    assert await _events(tmp_path) in ([1], [1, 2])
