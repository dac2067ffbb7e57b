"""Compaction of the snapshot file while the journal is open: a save that doubled the file
(``_snapshot_retention.grown_enough``) looks at what a compaction would drop and compacts when
that is worth it, in the save's thread, after the save is durable; the save's answer never
depends on it. Until the file has grown enough, no save looks at the retention at all."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from journals import FileJournal, JournalFailed, NewEvent, verify_journal
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from journals._snapshot_retention import COMPACT_GROWTH_BYTES_MIN
from journals.testing import FaultyFileIO

from .journal_files import CompactionLooks, snapshot_file_size

SNAPSHOTS = "snapshots.dat"
PAD = "p" * 8000  # About 8 KiB per snapshot: a MiB of saves takes about 130 of them.
STREAMS = 3
ROUNDS_MAX = 400  # Loops waiting for a compaction give up then: 10 MiB of snapshots saved.

pytestmark = pytest.mark.anyio


async def _save_round(journal: FileJournal, version: int, streams: int = STREAMS) -> None:
    """One event and one snapshot at its version for each stream."""
    for stream in range(streams):
        await journal.append(
            f"s{stream}", [NewEvent("E", {"v": version})], expected_version=version - 1
        )
        await journal.save_snapshot(f"s{stream}", version, {"at": version, "pad": PAD})


async def test_a_journal_kept_open_keeps_its_snapshot_file_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rounds = 300  # About 7 MiB of snapshots saved in all.
    largest = 0
    with caplog.at_level(logging.INFO, logger="journals.file"):
        async with FileJournal(tmp_path, durable=False) as journal:
            for version in range(1, rounds + 1):
                await _save_round(journal, version)
                largest = max(largest, snapshot_file_size(tmp_path))
            for stream in range(STREAMS):
                snapshot = await journal.load_snapshot(f"s{stream}")
                assert snapshot is not None
                assert snapshot.version == snapshot.data["at"] == rounds
                past = await journal.load_snapshot(f"s{stream}", max_version=rounds // 3)
                assert past is not None
                assert past.version <= rounds // 3
                assert past.data["at"] == past.version
    saved = rounds * STREAMS * len(PAD)
    compactions = [r for r in caplog.records if r.getMessage().startswith("compacted ")]
    assert len(compactions) >= 2
    # Looks come once the file doubled (and grew a MiB), and each one that compacts leaves
    # the few snapshots per stream kept: the file never comes near what was saved.
    assert largest < 4 * COMPACT_GROWTH_BYTES_MIN
    assert largest < saved / 2
    assert snapshot_file_size(tmp_path) < 4 * COMPACT_GROWTH_BYTES_MIN
    async with FileJournal(tmp_path) as journal:
        for stream in range(STREAMS):
            snapshot = await journal.load_snapshot(f"s{stream}")
            assert snapshot is not None
            assert snapshot.version == snapshot.data["at"] == rounds
    assert verify_journal(tmp_path).intact


async def test_no_save_looks_at_the_retention_until_the_file_has_grown_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = CompactionLooks(monkeypatch)
    async with FileJournal(tmp_path, durable=False) as journal:
        assert looks.count == 1  # Opening looks (and finds nothing to drop).
        looks.count = 0
        version = 0
        # Many snapshots of few streams, all but a few dead, short of a MiB in all.
        while snapshot_file_size(tmp_path) + STREAMS * (len(PAD) + 200) < COMPACT_GROWTH_BYTES_MIN:
            version += 1
            await _save_round(journal, version)
        assert looks.count == 0
        before = snapshot_file_size(tmp_path)
        while snapshot_file_size(tmp_path) < COMPACT_GROWTH_BYTES_MIN + 2 * len(PAD):
            version += 1
            await _save_round(journal, version)
        assert looks.count == 1  # The save that grew it a MiB looked, and found too little.
        assert snapshot_file_size(tmp_path) > before  # Nothing was dropped.


async def test_a_look_that_finds_too_little_to_drop_waits_for_the_file_to_double(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = CompactionLooks(monkeypatch)
    async with FileJournal(tmp_path, durable=False) as journal:
        looks.count = 0  # Opening looked.
        stream = 0
        # One snapshot per stream: everything is live, so no look ever compacts.
        while snapshot_file_size(tmp_path) < 2 * COMPACT_GROWTH_BYTES_MIN + len(PAD):
            await journal.append(f"n{stream}", [NewEvent("E", {})], expected_version=0)
            await journal.save_snapshot(f"n{stream}", 1, {"pad": PAD})
            stream += 1
        assert looks.count == 2  # At one MiB, then at twice that: not after every save.
        assert await journal.load_snapshot("n0") is not None


class _CompactionWriteFails(FaultyFileIO):
    """Writes to the compaction's new file fail with ENOSPC while ``failing``; every other
    write (the saves') succeeds."""

    failing = True

    def __init__(self) -> None:
        super().__init__()
        self._new_files: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith(".tmp"):
            self._new_files.add(fd)
        else:
            self._new_files.discard(fd)
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.failing and fd in self._new_files:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return super().pwrite(fd, data, offset)


async def test_a_compaction_failing_before_its_rename_leaves_saves_succeeding_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = _CompactionWriteFails()
    version = 0
    with caplog.at_level(logging.WARNING, logger="journals.file"):
        async with FileJournal(tmp_path, file_io=faults, durable=False) as journal:
            while not caplog.records:
                version += 1
                assert version < ROUNDS_MAX, "no save tried to compact"
                await _save_round(journal, version)  # Every save succeeds.
            failed_at = snapshot_file_size(tmp_path)
            assert not (tmp_path / (SNAPSHOTS + ".tmp")).exists()
            # Short of a doubling: no other try, so nothing more is logged.
            while snapshot_file_size(tmp_path) < failed_at + failed_at // 2:
                version += 1
                await _save_round(journal, version)
            assert len(caplog.records) == 1
            assert "failed before the new file replaced it" in caplog.records[0].getMessage()
            assert "No space left on device" in caplog.records[0].getMessage()
            faults.failing = False  # The cause is fixed: the next doubling compacts.
            while snapshot_file_size(tmp_path) >= failed_at:
                version += 1
                assert version < ROUNDS_MAX, "no save compacted once the cause was fixed"
                await _save_round(journal, version)
            assert len(caplog.records) == 1
            # Nothing failed the journal.
            await journal.append("s0", [NewEvent("E", {})], expected_version=version)
    async with FileJournal(tmp_path) as journal:
        snapshot = await journal.load_snapshot("s0")
        assert snapshot is not None
        assert snapshot.version == version


class _RenameFails(FaultyFileIO):
    """The rename of the compacted file fails with EIO, having been done (a lost answer)."""

    def replace(self, source: str, target: str) -> None:
        super().replace(source, target)
        raise OSError(errno.EIO, "Input/output error (simulated rename failure)")


async def test_a_failed_rename_after_a_save_fails_the_journal_and_the_save_stands(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = 0
    with caplog.at_level(logging.ERROR, logger="journals.file"):
        async with FileJournal(tmp_path, file_io=_RenameFails(), durable=False) as journal:
            while not caplog.records:
                version += 1
                assert version < STREAMS * ROUNDS_MAX, "no save tried to compact"
                await journal.append("s", [NewEvent("E", {})], expected_version=version - 1)
                await journal.save_snapshot("s", version, {"at": version, "pad": PAD})
            # Logged once, as every failure that fails the journal stop is: naming its directory.
            assert len(caplog.records) == 1
            message = caplog.records[0].getMessage()
            assert f"the journal in {tmp_path} failed (fail-stop)" in message
            assert "replacing the snapshot file" in message
            with pytest.raises(JournalFailed, match="replacing the snapshot file") as caught:
                await journal.append("s", [NewEvent("E", {})], expected_version=version)
            assert isinstance(caught.value.__cause__, OSError)
            with pytest.raises(JournalFailed):
                await journal.save_snapshot("s", version, {"at": "again"})
    assert not (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()
    async with FileJournal(tmp_path) as journal:
        snapshot = await journal.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data["at"] == version  # The save that compacted was answered, and kept.
    assert verify_journal(tmp_path).intact
