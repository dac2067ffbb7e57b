"""Compacting the snapshot file: it shrinks, every stream still loads what the retention rule
keeps, after reopening too, and the clean-close record, a torn tail, a keyed journal, the
read-only tools and saves and loads running meanwhile all go with it."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from journals import (
    FileJournal,
    JournalClosed,
    JournalCorrupted,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_journal,
)
from journals import _snapshot_retention as retention
from journals._clean_close import CLEAN_CLOSE_FILE_NAME, read_clean_close
from journals._snapshot_retention import retained

SNAPSHOTS = "snapshots.dat"
STREAMS = 4
VERSIONS = 24
KEY = b"k" * 32


def _size(directory: Path) -> int:
    return os.path.getsize(directory / SNAPSHOTS)


async def _fill(journal: FileJournal, streams: int = STREAMS, versions: int = VERSIONS) -> None:
    """``versions`` events per stream, a snapshot of each at every version."""
    for version in range(1, versions + 1):
        for stream in range(streams):
            await journal.append(
                f"s{stream}", [NewEvent("E", {"v": version})], expected_version=version - 1
            )
            await journal.save_snapshot(f"s{stream}", version, {"at": version, "pad": "p" * 64})


async def _answers(journal: FileJournal) -> dict[tuple[str, int | None], int | None]:
    """The version of the snapshot every stream loads, newest and at or below each version."""
    answers: dict[tuple[str, int | None], int | None] = {}
    for stream in range(STREAMS):
        for wanted in [None, *range(1, VERSIONS + 1)]:
            snapshot = await journal.load_snapshot(f"s{stream}", max_version=wanted)
            if snapshot is not None:
                assert snapshot.data["at"] == snapshot.version
            answers[f"s{stream}", wanted] = None if snapshot is None else snapshot.version
    return answers


def _expected_after() -> dict[tuple[str, int | None], int | None]:
    versions = list(range(1, VERSIONS + 1))
    kept = [versions[index] for index in retained(versions)]
    return {
        (f"s{stream}", wanted): max(v for v in kept if wanted is None or v <= wanted)
        for stream in range(STREAMS)
        for wanted in [None, *versions]
    }


@pytest.mark.anyio
async def test_the_file_shrinks_and_every_stream_loads_what_is_kept_after_reopening(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path, key=KEY) as journal:
        await _fill(journal)
        size_before = _size(tmp_path)
        compaction = await journal.compact_snapshots()
        assert compaction.snapshots_before == STREAMS * VERSIONS
        assert compaction.snapshots_after == STREAMS * len(retained(range(1, VERSIONS + 1)))
        assert compaction.bytes_before == size_before
        assert compaction.bytes_after == _size(tmp_path)
        assert compaction.bytes_after < size_before / 3
        assert await _answers(journal) == _expected_after()
        await journal.save_snapshot("s0", VERSIONS, {"at": VERSIONS, "again": True})
    # The clean close recorded the compacted file's size; opening accepts it.
    record = read_clean_close(str(tmp_path))
    assert record is not None
    assert record.snapshots_size == _size(tmp_path)
    assert verify_journal(tmp_path, key=KEY).intact
    assert len(list(read_journal_files(tmp_path, key=KEY))) == STREAMS * VERSIONS
    export_checkpoint(tmp_path, key=KEY)
    async with FileJournal(tmp_path, key=KEY) as journal:
        assert journal.recovery_report.snapshot_compaction is None  # Too small to be worth it.
        assert await _answers(journal) == _expected_after()
        newest = await journal.load_snapshot("s0")
        assert newest is not None
        assert newest.data == {"at": VERSIONS, "again": True}
        events = [event.data["v"] async for event in journal.read("s3")]
        assert events == list(range(1, VERSIONS + 1))


@pytest.mark.anyio
async def test_a_lookup_by_metadata_finds_the_latest_kept_of_an_earlier_schema(
    tmp_path: Path,
) -> None:
    # Snapshots of schema 1 up to version 13, of schema 2 after (a deploy that bumped it):
    # what a compaction keeps depends on the versions alone, so the latest of schema 1 may
    # go, and a lookup by metadata finds the latest of schema 1 that was kept.
    versions = list(range(1, VERSIONS + 1))
    async with FileJournal(tmp_path, durable=False) as journal:
        for version in versions:
            await journal.append("s", [NewEvent("E", {})], expected_version=version - 1)
            schema = 1 if version <= 13 else 2
            await journal.save_snapshot("s", version, {"at": version}, {"schema": schema})
        found = await journal.load_snapshot_matching("s", {"schema": 1})
        assert found is not None
        assert found.version == 13
        await journal.compact_snapshots()
        kept = [versions[index] for index in retained(versions)]
        expected = max(version for version in kept if version <= 13)
        assert expected < 13  # The latest of schema 1 was dropped.
        for wanted in (None, VERSIONS, 13):
            found = await journal.load_snapshot_matching("s", {"schema": 1}, wanted)
            assert found is not None
            assert (found.version, found.data, dict(found.metadata)) == (
                expected,
                {"at": expected},
                {"schema": 1},
            )


@pytest.mark.anyio
async def test_a_file_with_nothing_to_drop_is_left_as_it_is(tmp_path: Path) -> None:
    async with FileJournal(tmp_path, durable=False) as journal:
        await _fill(journal, streams=2, versions=2)
        inode = os.stat(tmp_path / SNAPSHOTS).st_ino
        compaction = await journal.compact_snapshots()
        assert compaction.snapshots_before == compaction.snapshots_after == 4
        assert compaction.bytes_before == compaction.bytes_after
        assert os.stat(tmp_path / SNAPSHOTS).st_ino == inode
    with pytest.raises(JournalClosed, match="closed"):
        await journal.compact_snapshots()


@pytest.mark.anyio
async def test_opening_compacts_once_the_dead_snapshots_are_worth_it_after_a_clean_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _fill(journal)
    assert (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    async with FileJournal(tmp_path) as journal:
        compaction = journal.recovery_report.snapshot_compaction
        assert compaction is not None
        assert compaction.snapshots_after < compaction.snapshots_before
        # The statistics count from the end of the opening, as for its other syncs.
        assert journal.statistics().fsyncs == 0
        assert await _answers(journal) == _expected_after()
    async with FileJournal(tmp_path) as journal:
        assert journal.recovery_report.snapshot_compaction is None  # Nothing dead any more.
        assert await _answers(journal) == _expected_after()


@pytest.mark.anyio
async def test_opening_cuts_a_torn_tail_then_compacts_and_removes_a_leftover_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path, durable=False) as journal:
        await _fill(journal)
    path = tmp_path / SNAPSHOTS
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(b"\x40\x00\x00\x00torn")  # Half a frame: what a crash in a save leaves.
    (tmp_path / (SNAPSHOTS + ".tmp")).write_bytes(b"half of a compacted file")
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    async with FileJournal(tmp_path) as journal:
        report = journal.recovery_report
        assert [(tail.offset, tail.bytes_cut) for tail in report.torn_tails] == [(size, 8)]
        assert report.snapshot_compaction is not None
        assert report.snapshot_compaction.bytes_before == size
        assert not (tmp_path / (SNAPSHOTS + ".tmp")).exists()
        assert await _answers(journal) == _expected_after()


@pytest.mark.anyio
async def test_a_directory_in_place_of_the_new_file_is_refused_before_any_change(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _fill(journal, streams=1, versions=2)
    (tmp_path / (SNAPSHOTS + ".tmp")).mkdir()
    with pytest.raises(JournalCorrupted, match=r"snapshots\.dat\.tmp.*directory"):
        async with FileJournal(tmp_path):
            pass
    assert (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()  # Nothing changed.
    assert not verify_journal(tmp_path).intact


@pytest.mark.anyio
async def test_saves_and_loads_meanwhile_go_on_and_nothing_saved_is_lost(
    tmp_path: Path,
) -> None:
    """Saves take turns with the compaction; loads never wait for it and never read a record
    of the other file (a load checks the stream and version of what it reads)."""
    loaded: list[int] = []
    async with FileJournal(tmp_path, durable=False) as journal:
        await _fill(journal)
        done = anyio.Event()

        async def load_until_done() -> None:
            while not done.is_set():
                snapshot = await journal.load_snapshot("s1", max_version=VERSIONS - 1)
                assert snapshot is not None
                loaded.append(snapshot.version)

        async def save_more() -> None:
            for stream in range(STREAMS):
                await journal.save_snapshot(f"s{stream}", VERSIONS, {"at": VERSIONS, "late": 1})

        async with anyio.create_task_group() as group:
            group.start_soon(load_until_done)
            group.start_soon(save_more)
            await journal.compact_snapshots()
            await journal.compact_snapshots()
            done.set()
        assert set(loaded) <= {VERSIONS - 1}
        for stream in range(STREAMS):
            snapshot = await journal.load_snapshot(f"s{stream}")
            assert snapshot is not None
            assert snapshot.data == {"at": VERSIONS, "late": 1}
    async with FileJournal(tmp_path) as journal:
        for stream in range(STREAMS):
            snapshot = await journal.load_snapshot(f"s{stream}")
            assert snapshot is not None
            assert snapshot.data == {"at": VERSIONS, "late": 1}
