"""The snapshot store on its own: fail-stop after a failed write or sync, and a closed store.

The store's methods block; the journal calls them in worker threads. Here they are called
directly, so each rule is shown without an event loop.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from journals import JournalClosed, JournalFailed
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
