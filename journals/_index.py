"""The FileJournal's in-memory index and the index file of a sealed segment.

The index is compact on purpose: per segment one ``array('I')`` of record offsets, per stream one
``array('Q')`` of global positions, so an event costs about 12 bytes, not a Python object.
Index files are encoded and decoded here as pure functions over bytes.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import struct
import sys
from array import array
from dataclasses import dataclass, field

from ._codec import FORMAT_VERSION, INDEX_MAGIC, SEGMENT_HEADER_BYTES, RecordError, crc32

_INDEX_HEADER = struct.Struct("<8sHHIQQQ32s")
INDEX_HEADER_BYTES = _INDEX_HEADER.size  # 72: an index file's event offsets start here.
_U32 = struct.Struct("<I")
_STREAM_ENTRY = struct.Struct("<B")

if sys.byteorder != "little":  # pragma: no cover - every supported platform is little-endian
    raise ImportError("journals' index files assume a little-endian machine")


@dataclass(slots=True)
class SegmentIndex:
    """Where a segment's committed events are. ``durable_end`` is the end of its last commit.

    Invariant: ``offsets[i]`` is the offset of the event at ``first_position + i``, every
    byte below ``durable_end`` is committed, and ``commits`` holds the offset of every commit
    record (so the hash chain can be recomputed batch by batch without parsing events).
    """

    path: str
    first_position: int
    offsets: array[int]
    durable_end: int
    final_hash: bytes
    commits: array[int] = field(default_factory=lambda: array("I"))
    index_file: str | None = None
    """The index file the offsets and streams came from at open; None when they came from the
    segment's own records (scanned, or written by this journal)."""

    @property
    def last_position(self) -> int:
        return self.first_position + len(self.offsets) - 1

    def span(self, position: int) -> tuple[int, int]:
        """(offset, upper bound of the end) of the event at ``position``."""
        index = position - self.first_position
        start = self.offsets[index]
        if index + 1 < len(self.offsets):
            return start, self.offsets[index + 1]
        return start, self.durable_end

    def run_span(self, first: int, last: int) -> tuple[int, int]:
        """(offset, upper bound of the end) of the events at positions ``first`` to ``last``:
        ``span(first)[0]`` and ``span(last)[1]`` in one call."""
        offsets = self.offsets
        index = last - self.first_position + 1
        end = offsets[index] if index < len(offsets) else self.durable_end
        return offsets[first - self.first_position], end


_POSITIONS_HEADER_BYTES = sys.getsizeof(array("Q"))
_POSITION_BYTES = array("Q").itemsize


class JournalIndex:
    """Streams to positions, positions to segment offsets. Holds only committed events.

    Invariant: every position from 1 to ``head_position`` is in exactly one stream's
    positions, and ``stream_ids_bytes`` is the size of the ids of ``streams`` (streams are
    added with ``add_stream_positions`` or ``new_stream`` and removed with ``drop_stream``),
    so that ``nbytes`` needs no walk over the streams.
    """

    def __init__(self) -> None:
        self.segments: list[SegmentIndex] = []
        self._segment_firsts: list[int] = []
        self.streams: dict[str, array[int]] = {}
        self.head_position = 0
        self.stream_ids_bytes = 0

    def add_segment(self, segment: SegmentIndex) -> None:
        self.segments.append(segment)
        self._segment_firsts.append(segment.first_position)
        self.head_position = segment.last_position

    def drop_last_segment(self) -> None:
        """Forget the last segment (one whose first batch failed to publish). The head is the
        caller's to set."""
        self.segments.pop()
        del self._segment_firsts[len(self.segments) :]

    def add_stream_positions(self, stream_id: str, positions: array[int]) -> None:
        existing = self.streams.get(stream_id)
        if existing is None:
            # A copy: the caller's array describes one segment and must stay as it is.
            self.streams[stream_id] = array("Q", positions)
            self.stream_ids_bytes += sys.getsizeof(stream_id)
        else:
            existing.extend(positions)

    def new_stream(self, stream_id: str) -> array[int]:
        """The empty positions of a stream not in the index yet, added to it."""
        positions = self.streams[stream_id] = array("Q")
        self.stream_ids_bytes += sys.getsizeof(stream_id)
        return positions

    def drop_stream(self, stream_id: str) -> None:
        del self.streams[stream_id]
        self.stream_ids_bytes -= sys.getsizeof(stream_id)

    def version(self, stream_id: str) -> int:
        positions = self.streams.get(stream_id)
        return 0 if positions is None else len(positions)

    def segment_of(self, position: int) -> SegmentIndex:
        return self.segments[bisect.bisect_right(self._segment_firsts, position) - 1]

    def nbytes(self) -> int:
        """Bytes of memory the index holds: arrays, stream keys and the dict's slots.

        Counted from sizes the index keeps, never by a walk over its streams (a journal may
        hold millions of them, and ``statistics()`` is read often): each stream's array as
        its header and its positions, without the spare room an array keeps to grow (a few
        positions, or about 6 % of a long one), and each segment's offsets as they are.
        """
        streams = self.streams
        total = (
            sys.getsizeof(streams)
            + sys.getsizeof(self.segments)
            + self.stream_ids_bytes
            + len(streams) * _POSITIONS_HEADER_BYTES
            + self.head_position * _POSITION_BYTES
        )
        for segment in self.segments:
            total += sys.getsizeof(segment.offsets) + 64
        return total

    def nbytes_walked(self) -> int:
        """``nbytes`` with the spare room of every stream's array, found by a walk over the
        streams: for a measurement (the benchmarks' index figure), not for ``statistics()``."""
        total = sys.getsizeof(self.streams) + sys.getsizeof(self.segments)
        for stream_id, positions in self.streams.items():
            total += sys.getsizeof(stream_id) + sys.getsizeof(positions)
        for segment in self.segments:
            total += sys.getsizeof(segment.offsets) + 64
        return total


# -- index files ---------------------------------------------------------------------------


def encode_index_file(
    segment: SegmentIndex, segment_bytes: int, streams: dict[bytes, array[int]]
) -> bytes:
    """The index file of a sealed segment (layout in docs/journal-format.md)."""
    parts = [
        _INDEX_HEADER.pack(
            INDEX_MAGIC,
            FORMAT_VERSION,
            0,
            0,
            segment.first_position,
            len(segment.offsets),
            segment_bytes,
            segment.final_hash,
        ),
        segment.offsets.tobytes(),
        _U32.pack(len(streams)),
    ]
    for stream_id, positions in streams.items():
        parts.extend((_STREAM_ENTRY.pack(len(stream_id)), stream_id, _U32.pack(len(positions))))
        parts.append(positions.tobytes())
    parts.extend((_U32.pack(len(segment.commits)), segment.commits.tobytes()))
    body = b"".join(parts)
    return body + _U32.pack(crc32(body))


@dataclass(frozen=True, slots=True)
class IndexFile:
    first_position: int
    segment_bytes: int
    final_hash: bytes
    offsets: array[int]
    streams: dict[bytes, array[int]]
    commits: array[int]


def decode_index_file(raw: bytes) -> IndexFile:
    """Decode and check an index file; raise RecordError when it cannot be trusted.

    Every count is checked against the bytes that remain before it is used, and the decoded
    values against each other (offsets inside the segment, positions inside its range, stream
    ids valid UTF-8), so hostile counts behind a valid checksum are refused, not obeyed.
    """
    if len(raw) < _INDEX_HEADER.size + 12:
        raise RecordError("index file is too short")
    end = len(raw) - 4
    if crc32(raw[:end]) != _U32.unpack_from(raw, end)[0]:
        raise RecordError("index file checksum mismatch")
    magic, version, _, _, first, count, segment_bytes, final_hash = _INDEX_HEADER.unpack_from(raw)
    if magic != INDEX_MAGIC or version != FORMAT_VERSION:
        raise RecordError("not an index file of format version 1")
    cursor = _INDEX_HEADER.size
    offsets = _array_at(raw, cursor, count, "I", end)
    cursor += 4 * count
    stream_count = _u32_at(raw, cursor, end)
    cursor += 4
    streams: dict[bytes, array[int]] = {}
    total = 0
    last_position = first + count - 1
    # Each of the segment's positions given to a stream, to refuse one given twice or never.
    covered = bytearray(count)
    unpack_u32 = _U32.unpack_from
    for _ in range(stream_count):
        if cursor >= end:
            raise RecordError("index file lengths do not add up")
        length = raw[cursor]
        stream_id = raw[cursor + 1 : cursor + 1 + length]
        cursor += 1 + length
        if cursor + 4 > end:
            raise RecordError("index file lengths do not add up")
        positions_count: int = unpack_u32(raw, cursor)[0]
        cursor += 4
        stop = cursor + 8 * positions_count
        if stop > end:
            raise RecordError("index file lengths do not add up")
        positions: array[int] = array("Q")
        positions.frombytes(raw[cursor:stop])
        cursor = stop
        if not length or stream_id in streams or not positions_count:
            raise RecordError("index file holds an empty or repeated stream entry")
        low, high = positions[0], positions[-1]
        if low < first or high > last_position:
            raise RecordError("index file holds positions outside its segment")
        try:
            stream_id.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("index file holds a stream id that is not UTF-8") from None
        start = low - first
        if high - low == positions_count - 1 and (positions_count < 3 or _increasing(positions)):
            # One run of consecutive positions (two in order are one).
            covered[start : start + positions_count] = b"\x01" * positions_count
        else:
            if not _increasing(positions):
                raise RecordError("index file holds a stream's positions out of order")
            for position in positions:
                covered[position - first] = 1
        streams[stream_id] = positions
        total += positions_count
    commit_count = _u32_at(raw, cursor, end)
    cursor += 4
    commits = _array_at(raw, cursor, commit_count, "I", end)
    cursor += 4 * commit_count
    if cursor != end or total != count:
        raise RecordError("index file lengths do not add up")
    if count and (offsets[0] < SEGMENT_HEADER_BYTES or offsets[-1] >= segment_bytes):
        raise RecordError("index file holds offsets outside its segment")
    if not _increasing(offsets):
        raise RecordError("index file holds offsets out of order")
    # As many positions as the segment has, all covered: none is claimed twice. Reads rely on
    # each stream's positions increasing, and stream versions on each position's one stream.
    if covered.count(0):
        raise RecordError("index file does not give every position of its segment to one stream")
    return IndexFile(first, segment_bytes, final_hash, offsets, streams, commits)


def index_file_offset_of_position(raw: bytes, stream_id: bytes, position: int) -> int | None:
    """Where the index file ``raw`` lists ``position`` among the positions of ``stream_id``,
    or None (not listed, or not an index file). For naming the byte an index file lies at."""
    try:
        count: int = _INDEX_HEADER.unpack_from(raw)[5]
        cursor = INDEX_HEADER_BYTES + 4 * count
        end = len(raw) - 4
        stream_count = _u32_at(raw, cursor, end)
        cursor += 4
        for _ in range(stream_count):
            length = raw[cursor]
            entry = raw[cursor + 1 : cursor + 1 + length]
            listed = _u32_at(raw, cursor + 1 + length, end)
            cursor += 5 + length
            if entry == stream_id:
                positions = _array_at(raw, cursor, listed, "Q", end)
                found = bisect.bisect_left(positions, position)
                if found < listed and positions[found] == position:
                    return cursor + 8 * found
                return None
            cursor += 8 * listed
    except (struct.error, IndexError, RecordError):
        return None
    return None


def _increasing(values: array[int]) -> bool:
    """Whether every value is larger than the one before it."""
    return all(map(operator.lt, values, itertools.islice(values, 1, None)))


def _u32_at(raw: bytes, cursor: int, end: int) -> int:
    if cursor + 4 > end:
        raise RecordError("index file lengths do not add up")
    value: int = _U32.unpack_from(raw, cursor)[0]
    return value


def _array_at(raw: bytes, cursor: int, count: int, typecode: str, end: int) -> array[int]:
    values: array[int] = array(typecode)
    if cursor + values.itemsize * count > end:
        raise RecordError("index file lengths do not add up")
    values.frombytes(raw[cursor : cursor + values.itemsize * count])
    return values
