"""A snapshot write that stalls in the disk: callers stop waiting, fail-stop still holds.

The file layer below holds the fdatasync of ``snapshots.dat`` until the test lets it go, then
lets it succeed or fail with EIO, as a disk that hangs and then errors would.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from journals import FileJournal, JournalFailed, NewEvent
from journals.testing import FileIO
from runtime import Runtime

from .journal_doubles import STALL_LIMIT_S, StallingSnapshots, until_stalled
from .test_runtime_bank import Deposit, Open, make_account


async def _until_failed(journal: FileJournal) -> JournalFailed:
    with anyio.fail_after(10):
        while True:
            try:
                await journal.append("other", [NewEvent("E", {})], expected_version=None)
            except JournalFailed as error:
                return error
            await anyio.sleep(0.005)


@pytest.mark.anyio
async def test_a_cancelled_snapshot_save_returns_at_once_and_its_failure_still_fails_the_journal(
    tmp_path: Path,
) -> None:
    file_io = StallingSnapshots()
    async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
        with anyio.move_on_after(0.1) as scope:
            await journal.save_snapshot("s", 1, {"n": 1})
        assert scope.cancelled_caught
        assert file_io.stalled.is_set()
        # Nobody waits for the save any more; its failure must stop the journal all the same.
        await journal.append("s", [NewEvent("E", {"n": 2})], expected_version=1)
        file_io.release(fail=True)
        error = await _until_failed(journal)
        assert "writing a snapshot failed" in str(error)
        assert isinstance(error.__cause__, OSError)
        assert error.__cause__.errno == errno.EIO
    async with FileJournal(tmp_path / "journal") as journal:
        assert await journal.stream_version("s") == 2  # Both acknowledged appends survived.


@pytest.mark.anyio
async def test_a_snapshot_save_that_ends_after_its_caller_left_is_kept(tmp_path: Path) -> None:
    file_io = StallingSnapshots()
    async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
        with anyio.move_on_after(0.1):
            await journal.save_snapshot("s", 1, {"n": 1})
        file_io.release(fail=False)
        # Closing the journal waits for the save in progress (it holds the store's file).
    async with FileJournal(tmp_path / "journal") as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert (snapshot.version, snapshot.data) == (1, {"n": 1})


@pytest.mark.anyio
async def test_leaving_the_runtime_is_bounded_while_a_snapshot_write_stalls(
    tmp_path: Path,
) -> None:
    file_io = StallingSnapshots()
    every_two = make_account(snapshot_every=2)
    async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
        async with Runtime(journal, shutdown_timeout_s=0.2) as runtime:
            await runtime.ask(every_two, "1", Open("ada"))
            await runtime.ask(every_two, "1", Deposit(5))  # version 2: a snapshot is queued
            await until_stalled(file_io)
            left_at = time.monotonic()
        # The bound is 0.2 s; the sync stalls until released below (up to STALL_LIMIT_S).
        assert time.monotonic() - left_at < STALL_LIMIT_S / 3
        assert runtime.statistics().snapshots == 0
        file_io.release(fail=True)
        error = await _until_failed(journal)
        assert "writing a snapshot failed" in str(error)
    async with FileJournal(tmp_path / "journal") as journal:
        assert await journal.stream_version("account-1") == 2


@pytest.mark.anyio
async def test_snapshots_left_queued_when_shutdown_stops_waiting_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # They were dropped without a word: neither snapshots nor snapshots_skipped counted them.
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    file_io = StallingSnapshots()
    every_one = make_account(snapshot_every=1)
    try:
        async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
            async with Runtime(journal, shutdown_timeout_s=0.1) as runtime:
                for command in (Open("ada"), Deposit(5), Deposit(6)):
                    await runtime.ask(every_one, "1", command)
                await until_stalled(file_io)  # The first is being written, two are queued.
            statistics = runtime.statistics()
            assert (statistics.snapshots, statistics.snapshots_skipped) == (0, 2)
            messages = [record.getMessage() for record in caplog.records]
            assert any("2 snapshot(s) were not written" in message for message in messages)
            file_io.release(fail=False)  # The write in progress goes on, and is kept.
        async with FileJournal(tmp_path / "journal") as journal:
            snapshot = await journal.load_snapshot("account-1")
            assert snapshot is not None
            assert snapshot.version == 1
    finally:
        file_io.release(fail=False)


@pytest.mark.anyio
async def test_saves_whose_callers_left_wait_for_the_stalled_one_and_loads_do_not(
    tmp_path: Path,
) -> None:
    file_io = StallingSnapshots()
    file_io.armed = False
    async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
        await journal.append("t", [NewEvent("E", {"n": 1})], expected_version=0)
        await journal.save_snapshot("t", 1, {"kept": True})  # before the disk stalls
        file_io.armed = True
        for attempt in range(5):
            with anyio.move_on_after(0.05):
                await journal.save_snapshot("s", 1, {"attempt": attempt})
        # One save is stalled in the disk; the callers after it gave up before theirs began.
        assert file_io.entered == 1
        # A load does not wait for the stalled save.
        with anyio.fail_after(5):
            loaded = await journal.load_snapshot("t")
        assert loaded is not None
        assert loaded.data == {"kept": True}
        file_io.release(fail=False)
        await journal.save_snapshot("s", 1, {"after": True})  # begins once the stalled one ended
        assert file_io.entered == 2
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data == {"after": True}


@pytest.mark.anyio
async def test_a_save_waiting_behind_one_whose_sync_fails_is_refused_and_never_synced(
    tmp_path: Path,
) -> None:
    file_io = StallingSnapshots()
    outcomes: dict[str, BaseException | None] = {}
    async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
        await journal.append("s", [NewEvent("E", {"n": 2})], expected_version=1)

        async def save(name: str, version: int) -> None:
            try:
                await journal.save_snapshot("s", version, {"by": name})
            except JournalFailed as error:
                outcomes[name] = error
            else:
                outcomes[name] = None

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(save, "first", 1)
            await until_stalled(file_io)
            tasks.start_soon(save, "second", 2)
            await anyio.wait_all_tasks_blocked()  # The second waits behind the first.
            file_io.release(fail=True)
        assert isinstance(outcomes["first"], JournalFailed)
        assert isinstance(outcomes["second"], JournalFailed)
        assert "writing a snapshot failed" in str(outcomes["second"])
        assert file_io.entered == 1  # The failed sync was not followed by another one.
        with pytest.raises(JournalFailed):
            await journal.save_snapshot("s", 2, {"by": "later"})
        assert file_io.entered == 1
    async with FileJournal(tmp_path / "journal") as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is None or snapshot.data == {"by": "first"}


class StallingSnapshotReads(FileIO):
    """Holds every read of ``snapshots.dat`` once armed, until ``released`` is set."""

    def __init__(self) -> None:
        self._snapshot_fds: set[int] = set()
        self.armed = False
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.reads_returned = 0

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith("snapshots.dat"):
            self._snapshot_fds.add(fd)
        return fd

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        if fd in self._snapshot_fds and self.armed:
            self.stalled.set()
            assert self.released.wait(STALL_LIMIT_S), "the test did not release the read"
            self.reads_returned += 1
        return super().pread(fd, length, offset)


@pytest.mark.anyio
async def test_a_snapshot_load_whose_caller_is_cancelled_returns_at_once(tmp_path: Path) -> None:
    # A load waited for its thread and then returned the snapshot, the cancellation lost: a
    # load slower than its caller's deadline (an activation's timeout_s) raised no timeout.
    file_io = StallingSnapshotReads()
    try:
        async with FileJournal(tmp_path / "journal", file_io=file_io) as journal:
            await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
            await journal.save_snapshot("s", 1, {"n": 1})
            file_io.armed = True
            with pytest.raises(TimeoutError), anyio.fail_after(0.1):
                await journal.load_snapshot("s")
            assert file_io.stalled.is_set()
            assert file_io.reads_returned == 0  # The caller left while its load ran.
            file_io.released.set()
            # Closing the journal waits for the load in progress (it reads the store's file).
        assert file_io.reads_returned == 1
    finally:
        file_io.released.set()
