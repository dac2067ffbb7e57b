"""Disk faults during a compaction of the snapshot file, through the fault-injecting file layer.

Before the rename nothing the journal uses depends on the new file: a full disk or a failed
write or sync of it raises ``SnapshotCompactionFailed``, removes the new file and leaves the
journal working with the old one, untouched (and opening goes on with it). A failed rename, or
a failed directory sync after it, leaves it unknown which file the name holds: the journal
fails as after a failed snapshot write, and reopening finds a whole file and every event.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from journals import (
    FileJournal,
    JournalFailed,
    NewEvent,
    SnapshotCompactionFailed,
    verify_journal,
)
from journals import _snapshot_retention as retention
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from journals.testing import FaultyFileIO

SNAPSHOTS = "snapshots.dat"
VERSIONS = 20

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


class RenameFaults(FaultyFileIO):
    """Also fails the rename (``fail_rename``) or the directory sync after one
    (``fail_directory_sync_after_rename``) with EIO, having done it."""

    fail_rename = False
    fail_directory_sync_after_rename = False
    renamed = False

    def replace(self, source: str, target: str) -> None:
        if self.fail_rename:
            raise OSError(errno.EIO, "Input/output error (simulated rename failure)")
        super().replace(source, target)
        self.renamed = True

    def fsync_directory(self, path: str) -> None:
        if self.renamed and self.fail_directory_sync_after_rename:
            raise OSError(errno.EIO, "Input/output error (simulated directory sync failure)")
        super().fsync_directory(path)


async def _fill(journal: FileJournal) -> None:
    for version in range(1, VERSIONS + 1):
        await journal.append("s", [NewEvent("E", {"v": version})], expected_version=version - 1)
        await journal.save_snapshot("s", version, {"at": version})


async def _check_reopened(directory: Path, versions: int, newest: int) -> None:
    async with FileJournal(directory) as journal:
        assert [event.data["v"] async for event in journal.read("s")] == list(
            range(1, versions + 1)
        )
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data == {"at": newest}
    assert verify_journal(directory).intact


def _arm_full_disk(faults: FaultyFileIO) -> None:
    faults.enospc_after_bytes = faults.bytes_written + 40  # The header and part of a record.


def _arm_failed_sync(faults: FaultyFileIO) -> None:
    faults.fail_fsync_after = faults.fsyncs  # The new file's sync is the first one.


@pytest.mark.parametrize("arm", [_arm_full_disk, _arm_failed_sync])
async def test_a_failure_before_the_rename_leaves_the_journal_working_with_the_old_file(
    tmp_path: Path, arm: Callable[[FaultyFileIO], None]
) -> None:
    faults = FaultyFileIO()
    async with FileJournal(tmp_path, file_io=faults) as journal:
        await _fill(journal)
        old = (tmp_path / SNAPSHOTS).read_bytes()
        arm(faults)
        with pytest.raises(SnapshotCompactionFailed, match="goes on with the old file") as caught:
            await journal.compact_snapshots()
        assert isinstance(caught.value.__cause__, OSError)
        assert (tmp_path / SNAPSHOTS).read_bytes() == old
        assert not (tmp_path / (SNAPSHOTS + ".tmp")).exists()
        faults.enospc_after_bytes = faults.fail_fsync_after = None  # The cause is fixed.
        await journal.append("s", [NewEvent("E", {"v": VERSIONS + 1})], expected_version=VERSIONS)
        await journal.save_snapshot("s", VERSIONS + 1, {"at": VERSIONS + 1})
        compaction = await journal.compact_snapshots()
        assert compaction.snapshots_after < compaction.snapshots_before
    assert (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()  # Nothing failed the journal.
    await _check_reopened(tmp_path, VERSIONS + 1, VERSIONS + 1)


@pytest.mark.parametrize("fault", ["fail_rename", "fail_directory_sync_after_rename"])
async def test_a_failed_rename_or_directory_sync_fails_the_journal_and_loses_nothing(
    tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    faults = RenameFaults()
    async with FileJournal(tmp_path, file_io=faults) as journal:
        await _fill(journal)
        setattr(faults, fault, True)
        with pytest.raises(JournalFailed, match="replacing the snapshot file") as caught:
            await journal.compact_snapshots()
        assert isinstance(caught.value.__cause__, OSError)
        with pytest.raises(JournalFailed, match="replacing the snapshot file"):
            await journal.append("s", [NewEvent("E", {})], expected_version=VERSIONS)
        with pytest.raises(JournalFailed):
            await journal.save_snapshot("s", VERSIONS, {"at": "again"})
        snapshot = await journal.load_snapshot("s")  # Loads go on, from the file they read.
        assert snapshot is not None
        assert snapshot.data == {"at": VERSIONS}
    assert not (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()
    assert not (tmp_path / (SNAPSHOTS + ".tmp")).exists() or fault == "fail_rename"
    # The journal's failure is logged once, as a failed append's write is.
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "journals.file"
    assert record.getMessage().startswith(
        f"the journal in {tmp_path} failed (fail-stop): replacing the snapshot file"
    )
    await _check_reopened(tmp_path, VERSIONS, VERSIONS)


async def test_opening_goes_on_with_the_old_file_when_its_compaction_fails_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _fill(journal)
    old = (tmp_path / SNAPSHOTS).read_bytes()
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    # The first open's only writes are the new file's: the clean-close record is removed.
    faults = FaultyFileIO(enospc_after_bytes=40)
    with caplog.at_level(logging.WARNING, logger="journals.file"):
        async with FileJournal(tmp_path, file_io=faults) as journal:
            assert journal.recovery_report.snapshot_compaction is None
            snapshot = await journal.load_snapshot("s", max_version=3)
            assert snapshot is not None
            assert snapshot.version == 3  # Every old snapshot is still there.
    assert "the journal opens with it" in caplog.text
    assert (tmp_path / SNAPSHOTS).read_bytes() == old
    async with FileJournal(tmp_path) as journal:
        compaction = journal.recovery_report.snapshot_compaction
        assert compaction is not None
        assert compaction.bytes_before == len(old)
    await _check_reopened(tmp_path, VERSIONS, VERSIONS)


async def test_a_failed_rename_while_opening_fails_the_open_and_the_next_open_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _fill(journal)
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    faults = RenameFaults()
    faults.fail_rename = True
    with pytest.raises(OSError, match="simulated rename failure"):
        async with FileJournal(tmp_path, file_io=faults):
            pass
    assert (tmp_path / (SNAPSHOTS + ".tmp")).exists()  # Left for the next open.
    await _check_reopened(tmp_path, VERSIONS, VERSIONS)


class SnapshotCloseFails(FaultyFileIO):
    """``close`` of a descriptor of ``snapshots.dat`` reports EIO after freeing it, as close(2)
    does (on NFS, say): the descriptor is gone whatever it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshot_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith(SNAPSHOTS):
            self.snapshot_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        super().close(fd)
        if fd in self.snapshot_fds:
            self.snapshot_fds.discard(fd)
            raise OSError(errno.EIO, "Input/output error (simulated close failure)")


async def test_an_error_closing_the_old_file_after_the_rename_fails_nothing(
    tmp_path: Path,
) -> None:
    # The new file is durable and in use by then; the old one is no longer read.
    async with FileJournal(tmp_path, file_io=SnapshotCloseFails()) as journal:
        await _fill(journal)
        compaction = await journal.compact_snapshots()
        assert compaction.snapshots_after < compaction.snapshots_before
        await journal.append("s", [NewEvent("E", {"v": VERSIONS + 1})], expected_version=VERSIONS)
        await journal.save_snapshot("s", VERSIONS + 1, {"at": VERSIONS + 1})
    assert (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()  # Nothing failed the journal.
    await _check_reopened(tmp_path, VERSIONS + 1, VERSIONS + 1)


async def test_an_error_closing_the_old_file_after_the_rename_does_not_fail_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _fill(journal)
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    async with FileJournal(tmp_path, file_io=SnapshotCloseFails()) as journal:
        assert journal.recovery_report.snapshot_compaction is not None
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data == {"at": VERSIONS}
    await _check_reopened(tmp_path, VERSIONS, VERSIONS)
