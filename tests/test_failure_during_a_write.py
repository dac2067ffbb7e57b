"""The journal fails while a batch is being written: that batch's answer is the failure, so the
live journal must not show it either (reads, versions, and the actors rebuilt from them)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from journals import FileJournal, JournalFailed
from runtime import Runtime

from .journal_doubles import SnapshotFileIO
from .test_runtime_bank import Deposit, Open, make_account

WAIT_S = 10.0


class HeldSegmentSync(SnapshotFileIO):
    """Once armed: holds the segment's fdatasync until ``release`` and fails the snapshot
    file's with EIO (a disk error on one file while another's write is in progress)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.segment_sync_entered = threading.Event()
        self.release = threading.Event()
        self.segment_synced = threading.Event()

    def fdatasync(self, fd: int) -> None:
        if self.armed:
            if self.on_snapshot_file(fd):
                raise OSError(errno.EIO, "Input/output error (simulated)")
            self.segment_sync_entered.set()
            assert self.release.wait(WAIT_S), "the test did not release the segment's sync"
            super().fdatasync(fd)
            self.segment_synced.set()
            return
        super().fdatasync(fd)


@pytest.mark.anyio
async def test_a_batch_failed_while_it_was_written_is_not_published(tmp_path: Path) -> None:
    account = make_account()
    file_io = HeldSegmentSync()
    directory = tmp_path / "journal"
    async with FileJournal(directory, file_io=file_io) as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "1", Open("ada"))
        file_io.armed = True
        answers: list[BaseException] = []

        async def deposit() -> None:
            try:
                await runtime.ask(account, "1", Deposit(10))
            except JournalFailed as error:
                answers.append(error)

        async with anyio.create_task_group() as group:
            group.start_soon(deposit)
            entered = await anyio.to_thread.run_sync(file_io.segment_sync_entered.wait, WAIT_S)
            assert entered, "the deposit's batch never reached its sync"
            # A snapshot's write fails while the deposit's batch is being synced.
            with pytest.raises(JournalFailed):
                await journal.save_snapshot(account.stream_id("1"), 1, {"state": 1})
            await anyio.wait_all_tasks_blocked()
            assert len(answers) == 1, "the deposit is answered with the journal's failure"
            file_io.release.set()  # ... and then its own write and sync succeed
        # The committer takes the writer's answer for the batch, then nothing is left to do.
        assert await anyio.to_thread.run_sync(file_io.segment_synced.wait, WAIT_S)
        await anyio.wait_all_tasks_blocked()
        stream = account.stream_id("1")
        assert await journal.stream_version(stream) == 1
        assert [event.version async for event in journal.read(stream)] == [1]
        assert await journal.head_position() == 1
        # The actor is rebuilt from what the journal shows: the deposit is not in it.
        state = await runtime.state(account, "1")
        assert state.balance == 0
    file_io.armed = False
    # On disk the batch is whole (its sync succeeded): reopening finds it, as it may find
    # any append whose answer was a failure.
    async with FileJournal(directory) as reopened:
        assert await reopened.stream_version(account.stream_id("1")) == 2
        events = [event async for event in reopened.read(account.stream_id("1"))]
        assert [event.version for event in events] == [1, 2]
        assert events[1].data == {"amount": 10}
