"""A sealed segment's index file must place every event where its record starts.

The hash chain covers a segment's bytes, not where its records start. A stream id may hold any
UTF-8, so it can hold the bytes of a whole event frame; an index file that places an event at
such a frame, inside the record that carries it, passed every check the chain makes, and
opening then served an event the journal never wrote, under a key no forger knew.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import anyio

from journals import FileJournal, NewEvent, verify_journal
from journals._codec import EVENT_HEADER_BYTES, FRAME_BYTES, encode_event
from journals._index import SegmentIndex, decode_index_file, encode_index_file

KEY = b"k" * 32
SEGMENT_BYTES_MAX = 4096
FIRST_INDEX = "00000000000000000001.idx"
FIRST_SEGMENT = "00000000000000000001.log"
POSITION = 2  # The position of the event whose stream id carries the frame.


def _stream_id_holding_a_frame() -> str:
    """'x' then a whole event frame (position 2 of stream 'victim'), all valid UTF-8."""
    for timestamp_ns in range(1, 100_000):  # Until the frame's checksum bytes are UTF-8.
        frame = encode_event(POSITION, 1, timestamp_ns, b"victim", b"Forged", b"", b'"forged"')
        try:
            return "x" + frame.decode("utf-8")
        except UnicodeDecodeError:
            continue
    raise AssertionError("no timestamp gave a frame that is valid UTF-8")  # pragma: no cover


def _write(directory: Path, crafted: str) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=KEY) as journal:
            await journal.append("a", [NewEvent("T", {})], expected_version=0)
            await journal.append(crafted, [NewEvent("Signup", {})], expected_version=0)
            for _ in range(20):  # A sealed first segment, with its index file.
                await journal.append(
                    "filler", [NewEvent("F", {"pad": "p" * 300})], expected_version=None
                )

    anyio.run(write)


def _place_the_event_at_the_embedded_frame(directory: Path, crafted: str) -> None:
    """Rewrite the first index file (valid checksum) so position 2 is the embedded frame,
    of stream 'victim'; every stream's count still adds up."""
    path = directory / FIRST_INDEX
    loaded = decode_index_file(path.read_bytes())
    offsets = array("I", loaded.offsets)
    offsets[POSITION - 1] += FRAME_BYTES + EVENT_HEADER_BYTES + 1  # Past the record's 'x'.
    streams = {s: p for s, p in loaded.streams.items() if s != crafted.encode()}
    streams[b"victim"] = array("Q", [POSITION])
    segment = SegmentIndex(
        str(directory / FIRST_SEGMENT),
        loaded.first_position,
        offsets,
        loaded.segment_bytes,
        loaded.final_hash,
        loaded.commits,
    )
    path.write_bytes(encode_index_file(segment, loaded.segment_bytes, streams))


def test_an_index_file_that_places_an_event_inside_a_record_is_rebuilt(tmp_path: Path) -> None:
    crafted = _stream_id_holding_a_frame()
    _write(tmp_path, crafted)
    _place_the_event_at_the_embedded_frame(tmp_path, crafted)
    report = verify_journal(tmp_path, key=KEY)
    assert report.problem is None
    assert report.notes == (
        f"{tmp_path / FIRST_INDEX} does not match its segment (opening rebuilds it)",
    )

    async def reopen() -> tuple[tuple[str, ...], list[object], int, int]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX, key=KEY) as journal:
            victim = [event.data async for event in journal.read("victim")]
            return (
                journal.recovery_report.rebuilt_indexes,
                victim,
                await journal.stream_version("victim"),
                await journal.stream_version(crafted),
            )

    rebuilt, victim, victim_version, crafted_version = anyio.run(reopen)
    assert rebuilt == (str(tmp_path / FIRST_SEGMENT),)
    assert (victim, victim_version, crafted_version) == ([], 0, 1)
