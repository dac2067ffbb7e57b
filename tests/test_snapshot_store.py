"""The snapshot store: fail-stop after a failed write or sync, a closed store, a load while
the journal closes, the largest snapshot, a record that is not the one indexed, a load of a
stream without a snapshot answered without a worker thread.

The store's methods block; the journal calls them in worker threads. Most tests here call
them directly, so each rule is shown without an event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from journals import (
    FileJournal,
    JournalClosed,
    JournalCorrupted,
    JournalFailed,
    NewEvent,
    Snapshot,
)
from journals._codec import (
    RECORD_BODY_BYTES_MAX,
    SNAPSHOT_FILE_HEADER_BYTES,
    SNAPSHOT_HEADER_BYTES,
)
from journals._file_snapshots import SnapshotStore
from journals.testing import FaultyFileIO, FileIO

from .journal_doubles import SnapshotFileIO

HOLD_LIMIT_S = 30.0
"""How long a held read waits for the test at most (a test that forgets to release it)."""


class HeldSnapshotReads(SnapshotFileIO):
    """Holds every read of ``snapshots.dat`` until ``release``; notes a close under a read."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self._released = threading.Event()
        self._reads_in_progress = 0
        self.closed_under_a_read = False

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        if not self.on_snapshot_file(fd):
            return super().pread(fd, length, offset)
        self._reads_in_progress += 1
        try:
            self.reading.set()
            assert self._released.wait(HOLD_LIMIT_S), "the test did not release the read"
            return super().pread(fd, length, offset)
        finally:
            self._reads_in_progress -= 1

    def close(self, fd: int) -> None:
        if self.on_snapshot_file(fd):
            self.closed_under_a_read |= self._reads_in_progress > 0
        super().close(fd)

    def release(self) -> None:
        self._released.set()


def _store(directory: Path, file_io: FaultyFileIO) -> SnapshotStore:
    directory.mkdir()
    store, tail = SnapshotStore.read(file_io, str(directory), durable=True)
    assert tail is None
    store.make_writable(str(directory), tail)
    return store


@pytest.mark.parametrize("fault", ["fsync", "write", "write of nothing"])
def test_after_a_failed_write_or_sync_the_store_writes_and_syncs_nothing_more(
    tmp_path: Path, fault: str
) -> None:
    file_io = FaultyFileIO()
    store = _store(tmp_path / "journal", file_io)
    store.save("s", 1, 0, b"", b"1")
    size = store.size
    if fault == "fsync":
        file_io.fail_fsync_after = file_io.fsyncs
    elif fault == "write":
        file_io.enospc_after_bytes = file_io.bytes_written + 5
    else:  # The file on disk stays as long as what was written before: only the failure shows.
        file_io.enospc_after_bytes = file_io.bytes_written
    with pytest.raises(OSError, match="simulated"):
        store.save("s", 2, 0, b"", b"2")
    # The disk works again: the store must still not write, nor retry the failed sync.
    file_io.fail_fsync_after = file_io.enospc_after_bytes = None
    writes, syncs = file_io.write_calls, file_io.fsyncs
    refused = r"an earlier write to .*snapshots\.dat failed"
    with pytest.raises(JournalFailed, match=refused) as error:
        store.save("s", 3, 0, b"", b"3")
    assert isinstance(error.value.__cause__, OSError)
    assert (file_io.write_calls, file_io.fsyncs) == (writes, syncs)
    if fault == "write of nothing":
        assert (tmp_path / "journal" / "snapshots.dat").stat().st_size == size
    # A save failed: whatever the file's size, a clean close must not record it.
    assert store.close() is None


def test_a_closed_store_refuses_saves_with_journal_closed(tmp_path: Path) -> None:
    file_io = FaultyFileIO()
    store = _store(tmp_path / "journal", file_io)
    store.save("s", 1, 0, b"", b"1")
    assert store.close() is not None
    with pytest.raises(JournalClosed, match="closed before the snapshot was written"):
        store.save("s", 2, 0, b"", b"2")


def test_a_closed_store_refuses_loads_with_journal_closed(tmp_path: Path) -> None:
    store = _store(tmp_path / "journal", FaultyFileIO())
    store.save("s", 1, 0, b"", b"1")
    loaded = store.load("s", None)
    assert loaded is not None
    assert loaded.data == 1
    store.close()
    # Never a read of a closed file descriptor (EBADF, or another file's if it was reused).
    with pytest.raises(JournalClosed, match="closed before the snapshot was read"):
        store.load("s", None)


@pytest.mark.anyio
async def test_closing_the_journal_waits_for_a_snapshot_load_in_progress(tmp_path: Path) -> None:
    file_io = HeldSnapshotReads()
    loaded: list[Snapshot | Exception | None] = []

    async def load(journal: FileJournal) -> None:
        try:
            loaded.append(await journal.load_snapshot("s"))
        except Exception as error:
            loaded.append(error)

    async def release_once_the_close_began() -> None:
        await anyio.wait_all_tasks_blocked()  # The close waits for its thread.
        file_io.release()

    try:
        async with anyio.create_task_group() as tasks:
            # Entered inside the task group and closed by this task, as a journal must be.
            journal = FileJournal(tmp_path / "journal", file_io=file_io)
            await journal.__aenter__()
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            await journal.save_snapshot("s", 1, {"x": "y"})
            tasks.start_soon(load, journal)
            assert await anyio.to_thread.run_sync(file_io.reading.wait, 10), "no load began"
            tasks.start_soon(release_once_the_close_began)
            await journal.aclose()
    finally:
        file_io.release()
    assert not file_io.closed_under_a_read
    [snapshot] = loaded
    assert isinstance(snapshot, Snapshot), snapshot
    assert snapshot.data == {"x": "y"}
    with pytest.raises(JournalClosed):
        await journal.load_snapshot("s")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Large: once is enough.
async def test_the_largest_snapshot_is_read_back_after_reopening(tmp_path: Path) -> None:
    largest = "x" * (RECORD_BODY_BYTES_MAX - SNAPSHOT_HEADER_BYTES - len(b"s") - 2)
    async with FileJournal(tmp_path / "journal") as journal:
        await journal.append("s", [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0)
        await journal.save_snapshot("s", 1, largest)
        await journal.save_snapshot("s", 2, {"small": True})
    async with FileJournal(tmp_path / "journal") as journal:
        assert journal.recovery_report.torn_tails == ()
        first = await journal.load_snapshot("s", max_version=1)
        assert first is not None
        assert first.data == largest
        second = await journal.load_snapshot("s")
        assert second is not None
        assert second.data == {"small": True}


@pytest.mark.anyio
@pytest.mark.parametrize("other", ["stream", "version"])
async def test_a_load_refuses_a_valid_record_that_is_not_the_one_indexed(
    tmp_path: Path, other: str
) -> None:
    """The store finds a snapshot by offset; the record read there must be that stream's, at
    that version. Another valid record of the same length written over it (its checksum holds)
    is refused, never handed out as the snapshot asked for."""
    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        await journal.append("a", [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0)
        await journal.append("b", [NewEvent("E", 1)], expected_version=0)
        await journal.save_snapshot("a", 2, {"of": "a2"})  # Indexed at the first record.
        other_stream, other_version = ("b", 1) if other == "stream" else ("a", 1)
        await journal.save_snapshot(other_stream, other_version, {"of": "x1"})
        path = directory / "snapshots.dat"
        contents = path.read_bytes()
        length = (len(contents) - SNAPSHOT_FILE_HEADER_BYTES) // 2  # Two records of one size.
        first = SNAPSHOT_FILE_HEADER_BYTES
        second = first + length
        assert len(contents) == second + length
        with path.open("r+b") as file:  # Behind the journal's back, while it is open.
            file.seek(first)
            file.write(contents[second : second + length])
        with pytest.raises(JournalCorrupted, match="not the one indexed here") as refused:
            await journal.load_snapshot("a", max_version=2)
        assert (refused.value.path, refused.value.offset) == (str(path), first)


class SnapshotCloseFails(FileIO):
    """``close`` of the snapshot file reports EIO after freeing the descriptor, as close(2)
    does (on NFS, say)."""

    def __init__(self) -> None:
        self.snapshot_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith("snapshots.dat"):
            self.snapshot_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        super().close(fd)
        if fd in self.snapshot_fds:
            self.snapshot_fds.discard(fd)
            raise OSError(5, "Input/output error (simulated close failure)")


@pytest.mark.anyio
async def test_an_error_closing_the_snapshot_file_still_closes_the_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The close goes on to the segments and the lock: this process can open the journal again.
    async with FileJournal(tmp_path, file_io=SnapshotCloseFails()) as journal:
        await journal.append("s", [NewEvent("E", {})], expected_version=0)
        await journal.save_snapshot("s", 1, {"at": 1})
    assert "simulated close failure" in caplog.text
    # What the file holds was not confirmed by its close: no clean-close record vouches for it.
    assert not (tmp_path / "closed-cleanly").exists()
    async with FileJournal(tmp_path) as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data == {"at": 1}


@pytest.mark.anyio
async def test_a_load_of_a_stream_without_a_snapshot_takes_no_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each activation of an entity that has events looks for a snapshot: most have none,
    # and a thread's round trip for each would cost more than replaying a short stream.
    threads: list[int] = []
    load = SnapshotStore.load

    def watched(store: SnapshotStore, stream_id: str, max_version: int | None) -> Snapshot | None:
        threads.append(threading.get_ident())
        return load(store, stream_id, max_version)

    monkeypatch.setattr(SnapshotStore, "load", watched)
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", [NewEvent("E", {"n": n}) for n in range(3)], expected_version=0)
        assert await journal.load_snapshot("s") is None
        assert await journal.load_snapshot("never written") is None
        await journal.save_snapshot("s", 2, {"at": 2})
        # None at or below version 1: answered without the file, as for no snapshot at all.
        assert await journal.load_snapshot("s", max_version=1) is None
        assert threads == []
        # A snapshot saved after the stream was looked up without one is found.
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert (snapshot.version, snapshot.data) == (2, {"at": 2})
        assert len(threads) == 1
        assert threads[0] != threading.get_ident()  # The file is read in a worker thread.
    async with FileJournal(tmp_path) as journal:  # Known again from the file once reopened.
        assert await journal.load_snapshot("s", max_version=1) is None
        snapshot = await journal.load_snapshot("s", max_version=2)
        assert snapshot is not None
        assert snapshot.data == {"at": 2}
    assert len(threads) == 2
