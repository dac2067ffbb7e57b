"""The snapshot store: fail-stop after a failed write or sync, a closed store, the largest
snapshot.

The store's methods block; the journal calls them in worker threads. Most tests here call
them directly, so each rule is shown without an event loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from journals import FileJournal, JournalClosed, JournalFailed, NewEvent
from journals._codec import RECORD_BODY_BYTES_MAX, SNAPSHOT_HEADER_BYTES
from journals._file_snapshots import SnapshotStore
from journals.testing import FaultyFileIO


def _store(directory: Path, file_io: FaultyFileIO) -> SnapshotStore:
    directory.mkdir()
    store, tail = SnapshotStore.read(file_io, str(directory), durable=True)
    assert tail is None
    store.make_writable(str(directory), tail)
    return store


@pytest.mark.parametrize("fault", ["fsync", "write"])
def test_after_a_failed_write_or_sync_the_store_writes_and_syncs_nothing_more(
    tmp_path: Path, fault: str
) -> None:
    file_io = FaultyFileIO()
    store = _store(tmp_path / "journal", file_io)
    store.save("s", 1, 0, b"", b"1")
    if fault == "fsync":
        file_io.fail_fsync_after = file_io.fsyncs
    else:
        file_io.enospc_after_bytes = file_io.bytes_written + 5
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
    # Its size is not what was written, so a clean close must not record it.
    assert store.close() is None


def test_a_closed_store_refuses_saves_with_journal_closed(tmp_path: Path) -> None:
    file_io = FaultyFileIO()
    store = _store(tmp_path / "journal", file_io)
    store.save("s", 1, 0, b"", b"1")
    assert store.close() is not None
    with pytest.raises(JournalClosed, match="closed before the snapshot was written"):
        store.save("s", 2, 0, b"", b"2")


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
