"""The record codec: round trips (hypothesis) and checksums that catch any flipped bit."""

from __future__ import annotations

import subprocess
import sys
import zlib
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals._codec import (
    COMMIT_FRAME_BYTES,
    SEGMENT_HEADER_BYTES,
    RecordError,
    chain_hash,
    crc32,
    decode_commit,
    decode_event,
    decode_segment_header,
    decode_snapshot,
    encode_commit,
    encode_event,
    encode_segment_header,
    encode_snapshot,
    read_frame,
)
from journals._index import (
    SegmentIndex,
    decode_index_file,
    encode_index_file,
    index_file_offset_of_position,
)

from .examples import examples

u64 = st.integers(0, 2**64 - 1)
short_text = st.text(min_size=1, max_size=40).filter(lambda t: len(t.encode("utf-8")) <= 255)
json_bytes = st.binary(max_size=300)


@given(
    position=u64,
    version=u64,
    timestamp=st.integers(-(2**63), 2**63 - 1),
    stream=short_text,
    event_type=short_text,
    metadata=json_bytes,
    data=json_bytes,
)
def test_event_round_trip(
    position: int,
    version: int,
    timestamp: int,
    stream: str,
    event_type: str,
    metadata: bytes,
    data: bytes,
) -> None:
    frame = encode_event(
        position, version, timestamp, stream.encode(), event_type.encode(), metadata, data
    )
    start, end = read_frame(frame, 0)
    assert end == len(frame)
    fields = decode_event(frame[start:end])
    assert (fields.position, fields.version, fields.timestamp_ns) == (position, version, timestamp)
    assert (fields.stream_id, fields.type) == (stream, event_type)
    assert (fields.metadata, fields.data) == (metadata, data)


@settings(max_examples=examples(50))
@given(data=json_bytes, bit=st.integers(0, 10_000))
def test_any_flipped_bit_fails_the_frame(data: bytes, bit: int) -> None:
    frame = bytearray(encode_event(7, 3, 123, b"stream", b"Type", b"", data))
    bit %= len(frame) * 8
    frame[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RecordError):
        read_frame(bytes(frame), 0)


@given(
    first=st.integers(1, 2**40),
    count=st.integers(1, 10_000),
    hashed=st.binary(min_size=32, max_size=32),
)
def test_commit_round_trip(first: int, count: int, hashed: bytes) -> None:
    frame = encode_commit(first, first + count - 1, hashed)
    assert len(frame) == COMMIT_FRAME_BYTES
    start, end = read_frame(frame, 0)
    commit = decode_commit(frame[start:end])
    assert (commit.first_position, commit.last_position, commit.event_count) == (
        first,
        first + count - 1,
        count,
    )
    assert commit.chain_hash == hashed


@given(
    first=st.integers(1, 2**63), previous=st.binary(min_size=32, max_size=32), keyed=st.booleans()
)
def test_segment_header_round_trip(first: int, previous: bytes, keyed: bool) -> None:
    raw = encode_segment_header(first, previous, keyed=keyed)
    assert len(raw) == SEGMENT_HEADER_BYTES
    header = decode_segment_header(raw)
    assert (header.first_position, header.previous_hash, header.keyed) == (first, previous, keyed)
    damaged = bytearray(raw)
    damaged[20] ^= 0x10
    with pytest.raises(RecordError, match="checksum"):
        decode_segment_header(bytes(damaged))


@given(version=u64, stream=short_text, metadata=json_bytes, data=json_bytes)
def test_snapshot_round_trip(version: int, stream: str, metadata: bytes, data: bytes) -> None:
    frame = encode_snapshot(version, 99, stream.encode(), metadata, data)
    start, end = read_frame(frame, 0)
    fields = decode_snapshot(frame[start:end])
    assert (fields.version, fields.timestamp_ns, fields.stream_id) == (version, 99, stream)
    assert (fields.metadata, fields.data) == (metadata, data)


@st.composite
def index_contents(draw: st.DrawFn) -> tuple[int, list[int], dict[bytes, list[int]], list[int]]:
    """A consistent index: each position of the segment belongs to exactly one stream."""
    first = draw(st.integers(1, 2**40))
    count = draw(st.integers(0, 40))
    # Records have a length, so offsets strictly increase.
    offsets = sorted(
        draw(st.lists(st.integers(64, 9_999), min_size=count, max_size=count, unique=True))
    )
    names = draw(st.lists(short_text, min_size=1, max_size=5, unique=True))
    streams: dict[bytes, list[int]] = {}
    for position in range(first, first + count):
        name = draw(st.sampled_from(names)).encode()
        streams.setdefault(name, []).append(position)
    commits = sorted(draw(st.lists(st.integers(64, 9_999), max_size=10)))
    return first, offsets, streams, commits


@given(index_contents())
def test_index_file_round_trip(
    contents: tuple[int, list[int], dict[bytes, list[int]], list[int]],
) -> None:
    first, offsets, streams, commits = contents
    segment = SegmentIndex(
        "x.log", first, array("I", offsets), 10_000, b"h" * 32, array("I", commits)
    )
    arrays = {key: array("Q", value) for key, value in streams.items()}
    decoded = decode_index_file(encode_index_file(segment, 10_000, arrays))
    assert (decoded.first_position, decoded.segment_bytes, decoded.final_hash) == (
        first,
        10_000,
        b"h" * 32,
    )
    assert list(decoded.offsets) == offsets
    assert list(decoded.commits) == commits
    assert {k: list(v) for k, v in decoded.streams.items()} == streams


@pytest.mark.parametrize(
    ("streams", "offsets", "message"),
    [
        ({b"s": [9]}, [64], "positions outside"),
        ({b"\xff": [1]}, [64], "not UTF-8"),
        ({b"s": [1]}, [5], "offsets outside"),
        ({b"s": [1], b"t": [1]}, [64], "do not add up"),
        ({b"s": [1, 2]}, [90, 64], "offsets out of order"),
        ({b"s": [1, 2]}, [64, 64], "offsets out of order"),
        ({b"s": [2, 1]}, [64, 90], "positions out of order"),
        ({b"s": [1, 2], b"t": [2]}, [64, 90, 120], "every position of its segment to one"),
        ({b"s": [1, 3], b"t": [3]}, [64, 90, 120], "every position of its segment to one"),
        ({b"s": [1]}, [200], "offsets outside"),  # At the segment's end: no record there.
        ({b"": [1]}, [64], "empty or repeated stream entry"),
        # First and last one span apart, as consecutive positions would be: still in order.
        ({b"s": [1, 3, 2, 4]}, [64, 90, 120, 150], "positions out of order"),
    ],
)
def test_index_files_with_hostile_contents_are_refused(
    streams: dict[bytes, list[int]], offsets: list[int], message: str
) -> None:
    segment = SegmentIndex("x.log", 1, array("I", offsets), 200, bytes(32))
    arrays = {key: array("Q", value) for key, value in streams.items()}
    with pytest.raises(RecordError, match=message):
        decode_index_file(encode_index_file(segment, 200, arrays))


def _resealed(body: bytes) -> bytes:
    """An index file's ``body`` with the checksum a forger would give it."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_index_files_with_hostile_bytes_behind_a_valid_checksum_are_refused() -> None:
    segment = SegmentIndex("x.log", 1, array("I", [64, 90]), 200, bytes(32))
    raw = encode_index_file(segment, 200, {b"s": array("Q", [1]), b"t": array("Q", [2])})
    body = bytearray(raw[:-4])
    version = bytearray(body)
    version[8:10] = (2).to_bytes(2, "little")
    repeated = bytes(body).replace(b"\x01t", b"\x01s")
    for hostile, message in [
        (bytes(version), "not an index file of format version 1"),
        (repeated, "empty or repeated stream entry"),
        (bytes(body) + bytes(4), "lengths do not add up"),  # Bytes after the last field.
    ]:
        with pytest.raises(RecordError, match=message):
            decode_index_file(_resealed(hostile))
    for cut in range(len(raw)):  # Cut anywhere, even within its checksum: refused.
        with pytest.raises(RecordError):
            decode_index_file(raw[:cut])


def test_the_byte_an_index_file_lists_a_position_at() -> None:
    segment = SegmentIndex("x.log", 1, array("I", [64, 90, 120]), 200, bytes(32))
    raw = encode_index_file(segment, 200, {b"s": array("Q", [1, 3]), b"t": array("Q", [2])})
    where = index_file_offset_of_position(raw, b"s", 3)
    assert where is not None
    assert raw[where : where + 8] == (3).to_bytes(8, "little")
    assert index_file_offset_of_position(raw, b"s", 2) is None  # Listed for t, not for s.
    assert index_file_offset_of_position(raw, b"u", 1) is None


def test_index_file_checksum_is_checked() -> None:
    segment = SegmentIndex("x.log", 1, array("I", [64]), 200, bytes(32))
    raw = bytearray(encode_index_file(segment, 200, {b"s": array("Q", [1])}))
    raw[30] ^= 1
    with pytest.raises(RecordError, match="checksum"):
        decode_index_file(bytes(raw))


def test_chain_hash_depends_on_key_previous_hash_and_bytes() -> None:
    base = chain_hash(bytes(32), b"batch", None)
    assert len(base) == 32
    assert chain_hash(bytes(32), b"batch", b"secret") != base
    assert chain_hash(b"\x01" * 32, b"batch", None) != base
    assert chain_hash(bytes(32), b"batcH", None) != base
    assert chain_hash(bytes(32), b"batch", None) == base


def test_partial_frames_say_partial() -> None:
    frame = encode_event(1, 1, 0, b"s", b"T", b"", b"{}")
    for cut in range(len(frame)):
        with pytest.raises(RecordError, match="partial"):
            read_frame(frame[:cut], 0)


@given(data=st.binary(max_size=5000), seed=st.integers(0, 2**32 - 1))
def test_the_crc32_in_use_is_zlibs(data: bytes, seed: int) -> None:
    # Records written with one implementation are read with the other: they must agree.
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, seed) == zlib.crc32(data, seed)


def test_without_zlib_ng_the_codec_uses_zlib() -> None:
    # zlib-ng comes with the 'fast' extra; without it, records are still written and checked.
    script = (
        "import sys, zlib; sys.modules['zlib_ng'] = None; "
        "from journals import _codec; "
        "assert _codec.crc32 is zlib.crc32, _codec.crc32; "
        "frame = _codec.encode_event(1, 1, 0, b's', b't', b'', b'{}'); "
        "start, end = _codec.read_frame(frame, 0); "
        "assert _codec.decode_event(frame[start:end]).stream_id == 's'"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


def test_with_zlib_ng_installed_the_codec_uses_it() -> None:
    from zlib_ng import zlib_ng  # The test extra installs it, as the 'fast' extra does.

    assert crc32 is zlib_ng.crc32


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=30),
    first_position=st.integers(min_value=1, max_value=10**6),
    tail=st.integers(min_value=1, max_value=500),
    data=st.data(),
)
def test_a_run_spans_from_its_first_event_to_the_end_bound_of_its_last(
    gaps: list[int], first_position: int, tail: int, data: st.DataObject
) -> None:
    offsets = [64 + sum(gaps[:index]) for index in range(len(gaps))]
    segment = SegmentIndex("x.log", first_position, array("I", offsets), offsets[-1] + tail, b"")
    first = data.draw(st.integers(first_position, segment.last_position))
    last = data.draw(st.integers(first, segment.last_position))
    assert segment.run_span(first, last) == (segment.span(first)[0], segment.span(last)[1])
