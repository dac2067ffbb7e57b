"""A crash while the snapshot file is created leaves a torn header, never a refused journal.

The first open writes the snapshot file's 16-byte header and syncs it before any snapshot can
be saved, so a crash in that write can leave part of the header (or zeros where it belongs)
but no snapshot: opening writes the header again and reports it, like a torn segment creation.
After a clean close the header was synced long before, so the same file is damage, refused
(durability.md G7 and G15).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent, verify_journal
from journals._clean_close import CLEAN_CLOSE_FILE_NAME, read_clean_close
from journals._codec import SEGMENT_HEADER_BYTES, crc32, encode_snapshot_file_header
from journals._recovery import TornTail
from journals.testing import FaultyFileIO

from .journal_files import file_digests

HEADER = encode_snapshot_file_header()


def _snapshot_file(directory: Path) -> Path:
    return directory / "snapshots.dat"


def _crash_while_creating_the_snapshot_file(directory: Path, header_bytes: int) -> None:
    """The first open, stopped by a crash after ``header_bytes`` of the snapshot file's header
    (the first segment's header comes first)."""

    async def crash() -> None:
        file_io = FaultyFileIO(crash_after_bytes=SEGMENT_HEADER_BYTES + header_bytes)
        with pytest.raises(OSError, match="simulated crash"):
            async with FileJournal(directory, file_io=file_io):
                pass

    anyio.run(crash)


def _open_save_and_report(directory: Path) -> tuple[TornTail, ...]:
    """Open the journal, append and save a snapshot; answer the torn tails opening cut."""

    async def open_and_save() -> tuple[TornTail, ...]:
        async with FileJournal(directory) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=None)
            version = await journal.stream_version("s")
            await journal.save_snapshot("s", version, {"at": version})
            return journal.recovery_report.torn_tails

    return anyio.run(open_and_save)


def _load(directory: Path) -> object:
    async def load() -> object:
        async with FileJournal(directory) as journal:
            snapshot = await journal.load_snapshot("s")
            return None if snapshot is None else snapshot.data

    return anyio.run(load)


@pytest.mark.parametrize("header_bytes", [1, 5, 8, 15])
def test_a_crash_while_the_header_is_written_leaves_a_journal_that_opens(
    tmp_path: Path, header_bytes: int
) -> None:
    directory = tmp_path / "journal"
    _crash_while_creating_the_snapshot_file(directory, header_bytes)
    torn = _snapshot_file(directory)
    assert torn.read_bytes() == HEADER[:header_bytes]
    report = verify_journal(directory)
    assert report.intact, report.problem  # What a crash leaves is not damage.
    [problem] = report.torn_tails
    assert (problem.path, problem.offset) == (str(torn), 0)
    assert problem.reason == (
        f"incomplete snapshot file header ({header_bytes} of 16 bytes), as a crash while "
        f"creating the file leaves it; opening writes the header again"
    )
    [tail] = _open_save_and_report(directory)
    assert (tail.path, tail.offset, tail.bytes_cut) == (str(torn), 0, header_bytes)
    assert torn.read_bytes().startswith(HEADER)
    assert verify_journal(directory).intact
    assert _load(directory) == {"at": 1}


@pytest.mark.parametrize("zero_bytes", [3, 16])
def test_zeros_where_the_header_belongs_are_a_torn_creation(
    tmp_path: Path, zero_bytes: int
) -> None:
    """A file system may store the new file's size before its data; a power cut then leaves
    zeros where the header was being written."""
    directory = tmp_path / "journal"
    _crash_while_creating_the_snapshot_file(directory, 0)
    _snapshot_file(directory).write_bytes(b"\0" * zero_bytes)
    [tail] = _open_save_and_report(directory)
    assert (tail.offset, tail.bytes_cut) == (0, zero_bytes)
    assert "zero bytes" in tail.reason
    assert _load(directory) == {"at": 1}


@pytest.mark.parametrize(
    "contents",
    [b"garbage", HEADER[:5] + b"\1", b"\0" * 16 + b"\1", bytes([HEADER[0] ^ 1]) + HEADER[1:]],
    ids=["other bytes", "not a prefix", "zeros and more", "a damaged whole header"],
)
def test_what_no_crash_while_creating_the_file_leaves_is_refused(
    tmp_path: Path, contents: bytes
) -> None:
    directory = tmp_path / "journal"
    _crash_while_creating_the_snapshot_file(directory, 0)
    _snapshot_file(directory).write_bytes(contents)
    before = file_digests(directory)
    with pytest.raises(JournalCorrupted, match=r"snapshots\.dat at byte offset 0"):
        _open_save_and_report(directory)
    assert file_digests(directory) == before


@pytest.mark.parametrize("record", ["current", "of an earlier version"])
def test_after_a_clean_close_a_torn_header_is_refused(tmp_path: Path, record: str) -> None:
    directory = tmp_path / "journal"
    _open_save_and_report(directory)
    if record == "of an earlier version":
        clean = read_clean_close(str(directory))
        assert clean is not None
        body = struct.pack(
            "<8sQQ32s", b"EFCLOSE1", clean.first_position, clean.size, clean.final_hash
        )
        (directory / CLEAN_CLOSE_FILE_NAME).write_bytes(body + struct.pack("<I", crc32(body)))
    snapshot_file = _snapshot_file(directory)
    with snapshot_file.open("r+b") as file:
        file.truncate(7)
    before = file_digests(directory)
    refusal = (
        r"incomplete snapshot file header \(7 of 16 bytes\), where a crash would leave a torn "
        r"tail, but the journal was closed cleanly"
    )
    with pytest.raises(JournalCorrupted, match=refusal):
        _open_save_and_report(directory)
    assert file_digests(directory) == before
    problem = verify_journal(directory).problem
    assert problem is not None
    assert problem.path == str(snapshot_file)
    assert "closed cleanly" in problem.reason
    assert os.path.getsize(snapshot_file) == 7
