"""Opening refuses damage before it changes any file, and verify reports what opening does.

Covers a journal whose segments are gone while its index and snapshot files remain, a
snapshot above its stream's last durable event, a snapshot file whose header fails its
checksum, and a refused open that must not have cut a torn tail first (durability.md G7).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent, verify_journal

from .journal_files import file_digests, open_and_close, without_clean_close

SEGMENT_BYTES_MAX = 4096


def _write(directory: Path, count: int = 40, snapshot_at: int | None = 40) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for index in range(count):
                data = {"i": index, "padding": "u" * 150}
                await journal.append("s", [NewEvent("T", data)], expected_version=index)
            if snapshot_at is not None:
                await journal.save_snapshot("s", snapshot_at, {"state": snapshot_at})

    anyio.run(write)


def _open(directory: Path) -> None:
    open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


@pytest.mark.parametrize("left", ["index files and snapshots", "snapshots only"])
def test_a_journal_whose_segments_are_all_gone_is_refused(tmp_path: Path, left: str) -> None:
    _write(tmp_path)
    for segment in _segments(tmp_path):
        segment.unlink()
    if left == "snapshots only":
        for index_file in tmp_path.glob("*.idx"):
            index_file.unlink()
    before = file_digests(tmp_path)
    with pytest.raises(
        JournalCorrupted, match=r"no segment files .* its segments are missing"
    ) as refused:
        _open(tmp_path)
    # The advice is to restore the segments, never to remove an index file (the evidence).
    assert "Restore the segment files" in str(refused.value)
    assert "removing it loses nothing" not in str(refused.value)
    assert file_digests(tmp_path) == before  # No new, empty first segment was created.
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert "its segments are missing" in problem.reason


def test_an_empty_directory_verifies_as_no_journal_yet(tmp_path: Path) -> None:
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert (report.segments, report.events) == (0, 0)
    assert any("holds no journal yet" in note for note in report.notes)


def test_a_snapshot_above_its_streams_last_event_is_refused(tmp_path: Path) -> None:
    _write(tmp_path)
    _segments(tmp_path)[-1].unlink()  # The events the snapshot covers are lost.
    # The journal was closed cleanly, so opening first sees the missing segment.
    with pytest.raises(JournalCorrupted, match="the segments after this one are missing"):
        _open(tmp_path)
    without_clean_close(tmp_path)  # Then only the snapshot shows the loss.
    before = file_digests(tmp_path)
    pattern = r"snapshot of stream 's' at version 40, but the stream's events end at version \d+"
    with pytest.raises(JournalCorrupted, match=pattern):
        _open(tmp_path)
    assert file_digests(tmp_path) == before
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path.endswith("snapshots.dat")
    assert "but the stream's events end at version" in problem.reason


def test_a_snapshot_at_the_last_event_opens(tmp_path: Path) -> None:
    _write(tmp_path)
    _open(tmp_path)
    assert verify_journal(tmp_path).problem is None


@pytest.mark.parametrize(
    "offset", [10, 11, 12, 15], ids=["reserved", "reserved high", "checksum", "checksum high"]
)
def test_a_snapshot_file_whose_header_fails_its_checksum_is_refused(
    tmp_path: Path, offset: int
) -> None:
    """Magic and version intact, but a flipped bit in the reserved field or the checksum: the
    header's CRC-32 no longer holds, so the header is damaged and opening refuses."""
    _write(tmp_path)
    path = tmp_path / "snapshots.dat"
    contents = bytearray(path.read_bytes())
    contents[offset] ^= 0x01
    path.write_bytes(bytes(contents))
    before = file_digests(tmp_path)
    refusal = r"snapshots\.dat at byte offset 0: not a snapshot file, or its header is damaged"
    with pytest.raises(JournalCorrupted, match=refusal):
        _open(tmp_path)
    assert file_digests(tmp_path) == before
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(path), 0)
    assert "header is damaged" in problem.reason


def _damage_first_snapshot(directory: Path) -> None:
    path = directory / "snapshots.dat"
    contents = bytearray(path.read_bytes())
    contents[16 + 4] ^= 0xFF  # The first record's checksum.
    path.write_bytes(bytes(contents))


@pytest.mark.parametrize("torn", ["partial record", "segment creation"])
def test_a_refused_open_changes_no_file(tmp_path: Path, torn: str) -> None:
    _write(tmp_path, count=40, snapshot_at=1)
    _write(tmp_path, count=0, snapshot_at=2)  # A second snapshot after the damaged one.
    without_clean_close(tmp_path)  # The torn write below stands for a crash.
    if torn == "partial record":
        with _segments(tmp_path)[-1].open("ab") as segment:
            segment.write(b"\x30\x00\x00\x00\x01\x02")  # Torn tail: a partial frame.
    else:
        # A crash while rolling to a new segment after position 40.
        (tmp_path / f"{41:020d}.log").write_bytes(b"\x00" * 10)
    _damage_first_snapshot(tmp_path)
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted, match=r"snapshots\.dat at byte offset 16"):
        _open(tmp_path)
    assert file_digests(tmp_path) == before
    # verify names what makes opening refuse, and the torn tail as well (no damage).
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert report.problem.path.endswith("snapshots.dat")
    what = "torn tail" if torn == "partial record" else "incomplete header"
    assert [what in tail.reason for tail in report.torn_tails] == [True]
    assert any(note.startswith("left by a crash, not damage: ") for note in report.notes)


def test_a_torn_tail_alone_is_still_cut(tmp_path: Path) -> None:
    _write(tmp_path, count=5, snapshot_at=None)
    without_clean_close(tmp_path)  # The torn write below stands for a crash.
    segment = _segments(tmp_path)[-1]
    size = os.path.getsize(segment)
    with segment.open("ab") as file:
        file.write(b"\x30\x00\x00\x00\x01\x02")
    _open(tmp_path)
    assert os.path.getsize(segment) == size


def test_a_small_segment_file_no_roll_could_have_created_is_refused(tmp_path: Path) -> None:
    """A crash while rolling leaves the segment named for the head position + 1, nothing else."""
    _write(tmp_path, count=60, snapshot_at=None)
    stray = tmp_path / f"{1046:020d}.log"
    stray.write_bytes(b"")
    before = file_digests(tmp_path)
    pattern = (
        rf"{stray.name} at byte offset 0: segment file of 0 bytes with an incomplete header, "
        r"named for position 1046, but the journal's events end at position 60: .*"
        r"Move it away"
    )
    with pytest.raises(JournalCorrupted, match=pattern):
        _open(tmp_path)
    assert file_digests(tmp_path) == before  # Nothing removed.
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(stray), 0)
    assert "named for position 1046, but the journal's events end at position 60" in (
        problem.reason
    )


@pytest.mark.parametrize("first", [2, 1046])
def test_a_lone_small_segment_file_not_named_for_position_1_is_refused(
    tmp_path: Path, first: int
) -> None:
    stray = tmp_path / f"{first:020d}.log"
    stray.write_bytes(b"\x00" * 10)
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted, match="but the journal's events end at position 0"):
        _open(tmp_path)
    assert file_digests(tmp_path) == before
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(stray)


@pytest.mark.parametrize("others", [0, 60])
def test_a_torn_segment_creation_named_for_the_next_position_is_removed(
    tmp_path: Path, others: int
) -> None:
    if others:
        _write(tmp_path, count=others, snapshot_at=None)
        without_clean_close(tmp_path)  # The torn creation below stands for a crash.
    torn = tmp_path / f"{others + 1:020d}.log"
    torn.write_bytes(b"\x00" * 10)
    report = verify_journal(tmp_path)
    assert report.intact, report.problem
    [tail] = report.torn_tails
    assert (tail.path, tail.offset) == (str(torn), 0)
    assert "opening the journal removes it" in tail.reason

    async def open_and_report() -> tuple[str, ...]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            return tuple(tail.path for tail in journal.recovery_report.torn_tails)

    assert anyio.run(open_and_report) == (str(torn),)
    assert verify_journal(tmp_path).intact
