"""``FileJournal(snapshot_compaction=False)``: the snapshot file is never compacted on its own,
neither by opening nor after a save, however much a compaction would drop; an explicit
``compact_snapshots()`` still compacts. Each test runs the same journal with the option on
too, to show that it would have compacted."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from journals import FileJournal, NewEvent, verify_journal
from journals import _snapshot_retention as retention

from .journal_files import CompactionLooks, snapshot_file_size

STREAMS = 3
VERSIONS = 16
SAVES = STREAMS * VERSIONS

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compacting is worth it, and a save looks, from the first byte: a few dozen small
    snapshots then compact at open and after saves, with every sync made."""
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    monkeypatch.setattr(retention, "COMPACT_GROWTH_BYTES_MIN", 1)


async def _fill(journal: FileJournal, directory: Path) -> list[int]:
    """An event and a snapshot at its version, ``VERSIONS`` times per stream; answers the
    size of the snapshot file after each save."""
    sizes = []
    for version in range(1, VERSIONS + 1):
        for stream in range(STREAMS):
            await journal.append(
                f"s{stream}", [NewEvent("E", {"v": version})], expected_version=version - 1
            )
            await journal.save_snapshot(f"s{stream}", version, {"at": version, "pad": "p" * 64})
            sizes.append(snapshot_file_size(directory))
    return sizes


async def _every_snapshot_loads(journal: FileJournal) -> bool:
    for stream in range(STREAMS):
        for version in range(1, VERSIONS + 1):
            snapshot = await journal.load_snapshot(f"s{stream}", max_version=version)
            if snapshot is None or snapshot.version != version:
                return False
    return True


async def test_saves_compact_only_with_the_option_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    async with FileJournal(on) as journal:
        sizes = await _fill(journal, on)
        compacted = journal.statistics()
    assert any(later < earlier for earlier, later in itertools.pairwise(sizes))
    # Each compaction syncs the new file and the directory: more syncs than saves and appends.
    assert compacted.fsyncs > compacted.batch_fsyncs + SAVES

    looks = CompactionLooks(monkeypatch)
    async with FileJournal(off, snapshot_compaction=False) as journal:
        sizes = await _fill(journal, off)
        statistics = journal.statistics()
        assert await _every_snapshot_loads(journal)
    assert looks.count == 0  # Neither opening nor any save looked at what to drop.
    assert sizes == sorted(set(sizes))  # Every save made the file larger; none shrank it.
    assert statistics.batch_fsyncs == statistics.appends == SAVES
    assert statistics.fsyncs == statistics.batch_fsyncs + SAVES  # One per save, no more.
    assert verify_journal(off).intact


async def test_opening_compacts_only_with_the_option_on_and_compact_snapshots_always_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off, on = tmp_path / "off", tmp_path / "on"
    async with FileJournal(off, snapshot_compaction=False, durable=False) as journal:
        await _fill(journal, off)
    shutil.copytree(off, on)
    size = snapshot_file_size(off)

    looks = CompactionLooks(monkeypatch)
    async with FileJournal(off, snapshot_compaction=False) as journal:
        assert journal.recovery_report.snapshot_compaction is None
        assert looks.count == 0
        assert snapshot_file_size(off) == size
        assert journal.statistics().fsyncs == 0
        assert await _every_snapshot_loads(journal)
        compaction = await journal.compact_snapshots()
        assert compaction.snapshots_before == SAVES
        assert compaction.snapshots_after < SAVES
        assert compaction.bytes_before == size
        assert compaction.bytes_after == snapshot_file_size(off) < size
        assert journal.statistics().fsyncs == 2  # The new file's and the directory's.
        assert not await _every_snapshot_loads(journal)
        newest = await journal.load_snapshot("s0")
        assert newest is not None
        assert newest.version == VERSIONS

    async with FileJournal(on) as journal:
        at_open = journal.recovery_report.snapshot_compaction
        assert at_open is not None
        assert (at_open.snapshots_before, at_open.bytes_before) == (SAVES, size)
        assert at_open.snapshots_after == compaction.snapshots_after
        assert snapshot_file_size(on) == compaction.bytes_after
