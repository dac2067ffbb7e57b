"""The clean-close record and the snapshot file: after a clean close, damage at the end of
`snapshots.dat` is refused too, and a snapshot write that failed leaves no record (G15)."""

from __future__ import annotations

import errno
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, JournalFailed, NewEvent
from journals._clean_close import (
    CLEAN_CLOSE_FILE_NAME,
    read_clean_close,
)
from journals.testing import FaultyFileIO

from .examples import examples
from .journal_doubles import SnapshotFileIO
from .journal_files import file_digests, without_clean_close
from .test_clean_close import (
    SEGMENT_BYTES_MAX,
    _append,
    _assert_cut_is_refused,
    _cut_off_last,
    _earlier_record,
    _flip_in_last,
    _partial_record,
    _read,
    _segments,
    _verify_names_the_refusal,
    _write,
)

SNAPSHOT_FILE = "snapshots.dat"


def _write_with_snapshots(directory: Path) -> None:
    """30 events of stream ``s`` and its snapshots at versions 10, 20 and 30, closed cleanly."""
    _write(directory, 30)

    async def save() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for version in (10, 20, 30):
                await journal.save_snapshot("s", version, {"at": version})

    anyio.run(save)


def _snapshot_ends(data: bytes) -> list[int]:
    """Offsets just past each record of a snapshot file (a 16-byte header, then frames)."""
    ends, offset = [], 16
    while offset + 8 <= len(data):
        offset += 8 + int.from_bytes(data[offset : offset + 4], "little")
        ends.append(offset)
    return ends


_flip_in_last_snapshot = functools.partial(_flip_in_last, record_ends=_snapshot_ends, at=12)
_partial_snapshot = functools.partial(_append, tail=b"\x40\x00\x00\x00\x01\x02\x03")
_last_snapshot_cut_off = functools.partial(_cut_off_last, record_ends=_snapshot_ends)


def _snapshot_file_removed(path: Path) -> int:
    path.unlink()
    return 0


SNAPSHOT_DAMAGE: dict[str, Callable[[Path], int]] = {
    "a flipped bit in the last snapshot": _flip_in_last_snapshot,
    "a partial snapshot after the end": _partial_snapshot,
    "the last snapshot cut off": _last_snapshot_cut_off,
    "the snapshot file removed": _snapshot_file_removed,
}


def _open_report(directory: Path) -> tuple[list[int], list[int | None], list[str]]:
    """The events of ``s``, its latest snapshots at or below 30, 20 and 10, and what
    opening cut (file names)."""

    async def look() -> tuple[list[int], list[int | None], list[str]]:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            events = [event.data["i"] async for event in journal.read("s")]
            found = []
            for version in (30, 20, 10):
                snapshot = await journal.load_snapshot("s", max_version=version)
                found.append(None if snapshot is None else snapshot.version)
            cut = [Path(tail.path).name for tail in journal.recovery_report.torn_tails]
            return events, found, cut

    return anyio.run(look)


def test_a_clean_close_records_the_snapshot_files_size(tmp_path: Path) -> None:
    _write_with_snapshots(tmp_path)
    record = read_clean_close(str(tmp_path))
    assert record is not None
    assert record.snapshots_size == (tmp_path / SNAPSHOT_FILE).stat().st_size
    assert len(_snapshot_ends((tmp_path / SNAPSHOT_FILE).read_bytes())) == 3
    assert _open_report(tmp_path) == (list(range(30)), [30, 20, 10], [])


@pytest.mark.parametrize("damage", SNAPSHOT_DAMAGE)
def test_damage_at_the_end_of_a_cleanly_closed_snapshot_file_is_refused_not_cut(
    tmp_path: Path, damage: str
) -> None:
    _write_with_snapshots(tmp_path)
    path = tmp_path / SNAPSHOT_FILE
    offset = SNAPSHOT_DAMAGE[damage](path)
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted, match="closed cleanly with its snapshot file") as refused:
        _read(tmp_path)
    assert (refused.value.path, refused.value.offset) == (str(path), offset)
    message = str(refused.value)
    assert "No event is lost with them" in message
    assert f"remove {tmp_path / CLEAN_CLOSE_FILE_NAME}" in message
    if not path.exists():
        assert "the snapshot file is missing" in message
    assert file_digests(tmp_path) == before  # Nothing cut or created, the record kept.
    _verify_names_the_refusal(tmp_path, path, offset, "closed cleanly with its snapshot file")
    # Following the advice: without the record the end is cut as after a crash. No event is
    # lost; the damaged snapshot is (the one at 30), an undamaged one is not.
    without_clean_close(tmp_path)
    events, found, cut = _open_report(tmp_path)
    assert events == list(range(30))
    if damage == "the snapshot file removed":
        assert (found, cut) == ([None, None, None], [])
    elif damage == "a partial snapshot after the end":
        assert (found, cut) == ([30, 20, 10], [SNAPSHOT_FILE])
    elif damage == "the last snapshot cut off":
        assert (found, cut) == ([20, 20, 10], [])
    else:
        assert (found, cut) == ([20, 20, 10], [SNAPSHOT_FILE])


@settings(max_examples=examples(15), deadline=None)
@given(cut=st.integers(1, 200))
def test_any_cut_of_a_cleanly_closed_snapshot_file_is_refused(cut: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        _write_with_snapshots(directory)
        path = directory / SNAPSHOT_FILE
        _assert_cut_is_refused(path, cut, 16, "closed cleanly with its snapshot file")


@pytest.mark.anyio
async def test_a_snapshot_file_written_behind_the_journals_back_leaves_no_record(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
        await journal.save_snapshot("s", 1, {"at": 1})
        with (tmp_path / SNAPSHOT_FILE).open("ab") as file:
            file.write(b"\x07" * 5)  # Not written by the journal: the close cannot vouch for it.
    assert read_clean_close(str(tmp_path)) is None
    async with FileJournal(tmp_path) as reopened:  # Checked as after a crash: the bytes cut.
        assert [Path(tail.path).name for tail in reopened.recovery_report.torn_tails] == [
            SNAPSHOT_FILE
        ]
        snapshot = await reopened.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.version == 1


class FailingSnapshotWrites(SnapshotFileIO, FaultyFileIO):
    """Writes to ``snapshots.dat`` fail with ENOSPC, before writing a byte, once ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.failing and self.on_snapshot_file(fd):
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return super().pwrite(fd, data, offset)


@pytest.mark.anyio
async def test_a_snapshot_write_that_failed_before_writing_leaves_no_record(
    tmp_path: Path,
) -> None:
    """The snapshot file is as long as before the failed save, yet the close vouches for
    nothing: a failed write fails the journal (fail-stop), and no record is written."""
    file_io = FailingSnapshotWrites()
    async with FileJournal(tmp_path, file_io=file_io) as journal:
        await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
        await journal.save_snapshot("s", 1, {"at": 1})
        size = (tmp_path / SNAPSHOT_FILE).stat().st_size
        file_io.failing = True
        with pytest.raises(JournalFailed, match="writing a snapshot failed"):
            await journal.save_snapshot("s", 1, {"at": 1, "again": True})
        assert (tmp_path / SNAPSHOT_FILE).stat().st_size == size
    assert read_clean_close(str(tmp_path)) is None
    async with FileJournal(tmp_path) as reopened:
        assert reopened.recovery_report.torn_tails == ()
        snapshot = await reopened.load_snapshot("s")
        assert snapshot is not None
        assert snapshot.data == {"at": 1}


def test_a_record_of_an_earlier_version_guards_the_segments_not_the_snapshots(
    tmp_path: Path,
) -> None:
    _write_with_snapshots(tmp_path)
    record = read_clean_close(str(tmp_path))
    assert record is not None
    (tmp_path / CLEAN_CLOSE_FILE_NAME).write_bytes(_earlier_record(record))
    _partial_snapshot(tmp_path / SNAPSHOT_FILE)
    segment = _segments(tmp_path)[-1]
    segment_bytes = segment.read_bytes()
    _partial_record(segment)
    with pytest.raises(JournalCorrupted, match="was closed cleanly") as refused:
        _read(tmp_path)
    assert refused.value.path == str(segment)
    segment.write_bytes(segment_bytes)  # Undamaged segments: the snapshot tail is cut.
    assert _open_report(tmp_path) == (list(range(30)), [30, 20, 10], [SNAPSHOT_FILE])
