"""A read that finds a record of another stream names the file that changed.

Opening checks a sealed segment against its index file's offsets and hash chain, but not
which stream each earlier position belongs to, so a read that finds an event of another stream
than the index file's map says has two suspects: the map (which no hash covers) or the
segment, changed since opening by a record replaced with one of the same length and a valid
frame. The hash chain opening checked tells them apart.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent
from journals._codec import EVENT_HEADER_BYTES, FRAME_BYTES, frame
from journals._index import SegmentIndex, decode_index_file, encode_index_file

SEGMENT_BYTES_MAX = 4096
FIRST_INDEX = "00000000000000000001.idx"
FIRST_SEGMENT = "00000000000000000001.log"
KEYS = [None, b"a key of sixteen"]


def _write(directory: Path, key: bytes | None) -> None:
    """Streams a (positions 1, 3, 5) and b (2, 4, 6) in the first segment, then filler."""

    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
            for version in range(3):
                for stream in ("a", "b"):
                    event = NewEvent("T", {"stream": stream, "version": version + 1})
                    await journal.append(stream, [event], expected_version=version)
            for _ in range(20):
                await journal.append(
                    "filler", [NewEvent("F", {"pad": "p" * 300})], expected_version=None
                )

    anyio.run(write)
    assert len(list(directory.glob("*.log"))) == 3


async def _read_a(directory: Path, key: bytes | None, change: bool) -> JournalCorrupted:
    """Open the journal, give position 3 (a's version 2) to stream b in the segment when
    ``change``, read stream a, and answer what the read raised."""
    segment = directory / FIRST_SEGMENT
    at = decode_index_file((directory / FIRST_INDEX).read_bytes()).offsets[2]
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
        assert journal.recovery_report.rebuilt_indexes == ()
        if change:
            data = bytearray(segment.read_bytes())
            length = int.from_bytes(data[at : at + 4], "little")
            body = bytearray(data[at + FRAME_BYTES : at + FRAME_BYTES + length])
            assert body[EVENT_HEADER_BYTES : EVENT_HEADER_BYTES + 1] == b"a"
            body[EVENT_HEADER_BYTES] = ord("b")  # Same length, valid frame.
            data[at : at + FRAME_BYTES + length] = frame(bytes(body))
            segment.write_bytes(bytes(data))
        with pytest.raises(JournalCorrupted) as caught:
            [event async for event in journal.read("a")]
    return caught.value


@pytest.mark.parametrize("key", KEYS, ids=["unkeyed", "keyed"])
def test_a_record_replaced_after_opening_is_blamed_not_the_index_file(
    tmp_path: Path, key: bytes | None
) -> None:
    """The read named the intact index file and said to delete it: reopening then refused the
    segment, whose hash chain no longer holds."""
    _write(tmp_path, key)
    at = decode_index_file((tmp_path / FIRST_INDEX).read_bytes()).offsets[2]
    error = anyio.run(_read_a, tmp_path, key, True)
    assert (error.path, error.offset) == (str(tmp_path / FIRST_SEGMENT), at)
    assert error.during == "read"
    assert "the segment changed since the journal opened it" in str(error)
    assert "delete it" not in str(error)


@pytest.mark.parametrize("key", KEYS, ids=["unkeyed", "keyed"])
def test_an_index_file_that_lies_is_still_blamed_in_a_keyed_journal(
    tmp_path: Path, key: bytes | None
) -> None:
    """The segment untouched and the map lying (a's and b's positions 3 and 4 swapped): the
    segment still hashes as opening found it, with the journal's key, so the index file is
    named."""
    _write(tmp_path, key)
    path = tmp_path / FIRST_INDEX
    loaded = decode_index_file(path.read_bytes())
    segment = SegmentIndex(
        str(tmp_path / FIRST_SEGMENT),
        loaded.first_position,
        loaded.offsets,
        loaded.segment_bytes,
        loaded.final_hash,
        loaded.commits,
    )
    streams = {**loaded.streams, b"a": array("Q", [1, 4, 5]), b"b": array("Q", [2, 3, 6])}
    path.write_bytes(encode_index_file(segment, loaded.segment_bytes, streams))
    error = anyio.run(_read_a, tmp_path, key, False)
    assert error.path == str(path)
    assert "the index file is wrong" in str(error)
