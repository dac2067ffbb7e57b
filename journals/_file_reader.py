"""Reading committed events back from segment files. Runs in a worker thread.

Positions are grouped into runs of consecutive positions within one segment, and runs that lie
close behind each other in a segment into one ``os.pread`` (the bytes between them are not
decoded). Every record read is checked again (frame checksum, kind, position, and for a
stream read its stream and version): a pair to the checks made before it was written.

Events are decoded into columns (``Columns``), not objects: a replay folds the columns
directly, and ``read``/``read_all`` build their ``RecordedEvent`` objects from them.
"""

from __future__ import annotations

import errno
import os
import struct
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import orjson

from ._codec import (
    EVENT_HEADER,
    FRAME,
    KIND_COMMIT,
    KIND_EVENT,
    LENGTH_CHECKSUMS,
    SMALL_RECORD_BYTES,
    ZERO_HASH,
    RecordError,
    crc32,
    decode_event,
    read_frame,
)
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._index import JournalIndex, SegmentIndex
from ._index_trust import blame_for_read
from ._segment_files import SegmentFiles, SegmentNotOpen
from ._types import EMPTY_METADATA, StreamChunk, stream_chunk

_crc32 = crc32
_loads = orjson.loads
_pack_length = struct.Struct("<I").pack
# The frame and the event header are adjacent: one unpack reads both.
_FRAMED_HEADER = struct.Struct("<II" + EVENT_HEADER.format.lstrip("<"))
_unpack_framed_header_from = _FRAMED_HEADER.unpack_from
_FRAMED_HEADER_BYTES = _FRAMED_HEADER.size
_FRAME_BYTES = FRAME.size
_EVENT_HEADER_BYTES = EVENT_HEADER.size


class Columns:
    """Decoded events, one list per field. ``streams`` and ``versions`` are filled only when
    the read was not of one stream (a stream's are known: its id, and consecutive versions)."""

    __slots__ = ("data", "metadata", "nbytes", "streams", "timestamps", "types", "versions")

    def __init__(self) -> None:
        self.nbytes = 0  # Bytes read: the runs', and those between runs read together.
        self.streams: list[str] = []
        self.versions: list[int] = []
        self.types: list[str] = []
        self.data: list[Any] = []
        self.metadata: list[Mapping[str, Any]] = []
        self.timestamps: list[int] = []

    def stream_chunk(
        self, stream_id: str, first_version: int, positions: array[int]
    ) -> StreamChunk:
        """These events as a chunk of ``stream_id``: the first of ``positions``, as many as
        were read, from version ``first_version`` on."""
        count = len(self.types)
        return stream_chunk(
            stream_id,
            first_version,
            positions[:count] if count < len(positions) else positions,
            self.types,
            self.data,
            self.metadata,
            self.timestamps,
        )


def read_positions(
    index: JournalIndex,
    segment_files: SegmentFiles,
    positions: Sequence[int],
    stream_id: str | None,
    first_version: int,
    bytes_max: int,
    key: bytes | None,
    *,
    cached_only: bool = False,
) -> Columns:
    """The events at the first of ``positions`` (each committed), in the order given.

    Reads whole runs until about ``bytes_max`` bytes are read, or until the reads of other
    segments left too many files for the loop's thread to close (``crowded``), so the answer
    may hold fewer events than asked for (never none): the caller asks again from there. Runs
    that lie close behind each other in one segment are read together (``_coalesced``); the
    bytes between them are read but not decoded, and count against ``bytes_max``. With
    ``stream_id``, the events are versions ``first_version``, ``first_version + 1``, ... of
    that stream, and every event read must say so (a pair to the index). ``key`` is the
    journal's: a failed read checks a segment's hash chain with it (``blame_for_read``).

    ``cached_only`` reads only what the page cache holds (``RWF_NOWAIT``): a read that would
    wait for the disk raises ``ReadWouldBlock`` instead, so the event loop's thread may call it.
    """
    columns = Columns()
    stream = None if stream_id is None else stream_id.encode("utf-8")
    decode = _decode_run if stream is None else _decode_stream_run
    count = len(positions)
    budget = bytes_max
    start_index = 0
    segment = None
    last_in_segment = 0
    # One run object for the whole read: what its decoding learns of the stream's records
    # (their types' names) serves the next run too, as most runs of a replay are one event.
    run = _Run(b"", "", 0, 0, 0, stream)
    blamed: tuple[SegmentIndex, int] | None = None  # Whose ``run.blame`` is set.
    while start_index < count and budget > 0:
        first = positions[start_index]
        if segment is None or first > last_in_segment:
            # Positions only increase: up to its last, the run is in the segment read last.
            segment = index.segment_of(first)
            last_in_segment = segment.last_position
        end_index = _run_end(positions, start_index, count, last_in_segment)
        start, end = segment.run_span(first, positions[end_index - 1])
        if end - start > budget and end_index - start_index > 1:
            # Cut the run at the last event that ends within the budget (at least one event).
            low, high = start_index + 1, end_index - 1
            while low < high:
                middle = (low + high + 1) // 2
                if segment.span(positions[middle - 1])[1] - start <= budget:
                    low = middle
                else:
                    high = middle - 1
            end_index = low
            _, end = segment.span(positions[end_index - 1])
        runs = None
        if (
            end_index < count
            and positions[end_index] <= last_in_segment
            and segment.offsets[positions[end_index] - segment.first_position] - end
            <= GAP_BYTES_MAX
        ):
            runs = _coalesced(segment, positions, start_index, end_index, start, end, budget)
            if len(runs) == 1:
                runs = None  # The next run does not fit the budget: read on its own.
            else:
                end_index, end = runs[-1][1], runs[-1][3]
        if cached_only:
            # On the loop's thread, to the end of the read without yielding: not counted.
            try:
                fd = segment_files.acquire_on_loop(segment.first_position)
            except SegmentNotOpen:
                raise ReadWouldBlock from None  # Opening the file is a reader thread's work.
            raw = _pread_cached(fd, end - start, start)
        else:
            if start_index and segment_files.crowded():
                break  # Answer what was read: the loop's thread closes the files retired.
            fd = segment_files.acquire(segment.first_position)
            raw = b""
        try:
            if not cached_only:
                raw = os.pread(fd, end - start, start)
            if blamed is None or blamed[0] is not segment or blamed[1] != fd:
                blamed = (segment, fd)
                run.path = segment.path
                run.blame = (
                    None
                    if segment.index_file is None
                    else _blame_of(index, segment, fd, key, cached_only=cached_only)
                )
            if runs is None:
                run.raw = raw
                run.base = start
                run.first = first
                run.wanted = end_index - start_index
                decode(run, first_version + start_index, columns)
            else:
                for run_start_index, run_end_index, run_start, run_end in runs:
                    # Each run decodes its own bytes, as if read alone: what lies between
                    # is never parsed, so it can neither be taken nor be blamed.
                    run.raw = raw[run_start - start : run_end - start]
                    run.base = run_start
                    run.first = positions[run_start_index]
                    run.wanted = run_end_index - run_start_index
                    decode(run, first_version + run_start_index, columns)
        finally:
            if not cached_only:
                segment_files.release(fd)
        budget -= end - start
        columns.nbytes += end - start
        start_index = end_index
    return columns


GAP_BYTES_MAX = 4096
"""The most bytes of other records between two runs of one segment that are read along with
them (and not decoded) rather than with a read of their own: see ``_coalesced``."""

RunSpan = tuple[int, int, int, int]
"""A run of a read: the index of its first position and the index after its last one in the
positions asked for, and the offsets where its bytes start and end in its segment."""


def _coalesced(
    segment: SegmentIndex,
    positions: Sequence[int],
    start_index: int,
    end_index: int,
    start: int,
    end: int,
    budget: int,
) -> list[RunSpan]:
    """The run from ``start_index`` to ``end_index`` (bytes ``start`` to ``end``) and the runs
    after it that one read of the segment takes too: each begins at most ``GAP_BYTES_MAX``
    bytes after the one before ends, and the read ends within ``budget`` bytes of ``start``.

    A stream written one event per command while other streams were written too has no two
    consecutive positions: each event would cost a read of its own, and a read (a system call,
    and the setup of its decoding) costs several times the decoding of a short event.
    """
    runs = [(start_index, end_index, start, end)]
    count = len(positions)
    offsets = segment.offsets
    first_in_segment = segment.first_position
    records = len(offsets)
    while end_index < count:
        following = positions[end_index]
        number = following - first_in_segment
        if number >= records or offsets[number] - end > GAP_BYTES_MAX:
            break
        # A run of one event, mostly: the search for its end only when it is longer.
        run_end_index = end_index + 1
        if run_end_index < count and positions[run_end_index] == following + 1:
            run_end_index = _run_end(positions, end_index, count, first_in_segment + records - 1)
        after = number + run_end_index - end_index  # The record after the run's last event.
        run_end = offsets[after] if after < records else segment.durable_end
        if run_end - start > budget:
            break  # A run of its own, cut to the budget if need be.
        runs.append((end_index, run_end_index, offsets[number], run_end))
        end_index, end = run_end_index, run_end
    return runs


def _run_end(positions: Sequence[int], start: int, count: int, last_in_segment: int) -> int:
    """The end of the run of consecutive positions from ``start`` on within one segment.

    Positions only increase, so ``positions[j] - positions[start] == j - start`` holds exactly
    up to the run's end: a binary search, not a step per event (a stream written on its own
    is one long run).
    """
    following = start + 1
    if (
        following == count
        or positions[following] != positions[start] + 1
        or positions[following] > last_in_segment
    ):
        return start + 1
    first = positions[start]
    last = count - 1
    if positions[last] - first == last - start and positions[last] <= last_in_segment:
        return count  # The rest is one run: a short stream written in one append, say.
    low, high = start + 1, last - 1  # Invariant: low is in the run; high bounds it.
    while low < high:
        middle = (low + high + 1) // 2
        position = positions[middle]
        if position - first == middle - start and position <= last_in_segment:
            low = middle
        else:
            high = middle - 1
    return low + 1


CACHED_READS = hasattr(os, "preadv") and hasattr(os, "RWF_NOWAIT")
"""Whether this platform can read without waiting for the disk (Linux: ``RWF_NOWAIT``)."""


class ReadWouldBlock(Exception):
    """A ``cached_only`` read needs data that is not in the page cache."""


class CachedReadsUnsupported(ReadWouldBlock):
    """The kernel or the file system cannot read without waiting (``RWF_NOWAIT``)."""


_NO_CACHED_READ = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})
"""What ``preadv`` with ``RWF_NOWAIT`` raises where it is not offered: the flag unknown to the
kernel or the file system, or no ``preadv2`` system call at all (musl's ``preadv2`` passes the
kernel's ``ENOSYS`` on, as do sandboxes that filter system calls); as for the writer's synced
write (``FileIO.write_durably``), the plain call is used there instead."""


def _pread_cached(fd: int, length: int, offset: int) -> bytes:
    buffer = bytearray(length)
    try:
        read = os.preadv(fd, [buffer], offset, os.RWF_NOWAIT)
    except BlockingIOError:
        raise ReadWouldBlock from None
    except OSError as error:
        if error.errno in _NO_CACHED_READ:
            raise CachedReadsUnsupported from None
        raise
    if read != length:
        raise ReadWouldBlock  # Partly cached: the rest would wait for the disk.
    return bytes(buffer)


Blame = Callable[[int, "bytes | None", int], "JournalCorrupted | None"]
"""Given the position, stream and version a read failed at: the error that names the file to
blame, when that is not the record where the read stopped (see ``blame_for_read``)."""


class _Run:
    """Bytes read from one segment that hold ``wanted`` events from position ``first`` on."""

    __slots__ = (
        "base", "blame", "first", "last_key", "last_type", "path", "raw", "stream", "type_names",
        "wanted",
    )  # fmt: skip

    def __init__(
        self, raw: bytes, path: str, base: int, first: int, wanted: int, stream: bytes | None
    ) -> None:
        self.raw = raw
        self.path = path
        self.base = base
        self.first = first
        self.wanted = wanted
        self.stream = stream
        self.blame: Blame | None = None  # Set for a segment opened from its index file.
        # What decoding learnt, kept from run to run of one read: type names by their bytes,
        # and the stream id and type bytes of the last event of ``stream`` with its type.
        self.type_names: dict[bytes, str] = {}
        self.last_key = b""
        self.last_type = ""


def _blame_of(
    index: JournalIndex, segment: SegmentIndex, fd: int, key: bytes | None, *, cached_only: bool
) -> Blame:
    """How a failed read of ``segment`` (opened from its index file) finds the file to blame."""

    def blame(position: int, stream: bytes | None, version: int) -> JournalCorrupted | None:
        if cached_only:
            raise ReadWouldBlock  # Finding out reads the whole segment: in a reader thread.
        first = segment.first_position
        # The chain before the segment, as opening checked it: the one before's final hash.
        previous_hash = ZERO_HASH if first == 1 else index.segment_of(first - 1).final_hash
        return blame_for_read(fd, segment, previous_hash, key, position, stream, version)

    return blame


def _decode_run(run: _Run, version: int, columns: Columns) -> None:
    """Decode the run's events into ``columns``; ``version`` is the first one's (stream reads).

    The fast loops make the same checks as ``read_frame`` and ``decode_event`` in one pass,
    without intermediate objects; at anything they do not take (damage, an unexpected stream
    or version, an unusual field) they hand over to ``_decode_checked``, which makes the checks
    one by one and raises with the exact reason. A read of one stream (every replay) has a
    loop of its own, ``_decode_stream_run``; this one reads each event's stream and version
    (``read_all``): about a microsecond per event.
    """
    if run.stream is not None:
        _decode_stream_run(run, version, columns)
        return
    raw = run.raw
    size = len(raw)
    streams, versions = columns.streams, columns.versions
    types, data, metadata = columns.types, columns.data, columns.metadata
    timestamps = columns.timestamps
    type_names = run.type_names
    last_type_bytes = b""
    last_type = ""
    offset = 0
    position = run.first
    stop = position + run.wanted
    while position < stop:
        if size - offset < _FRAMED_HEADER_BYTES:
            break
        length, crc, kind, found, found_version, timestamp, stream_length, type_length, meta = (
            _unpack_framed_header_from(raw, offset)
        )
        start = offset + _FRAME_BYTES
        end = start + length
        if end > size:
            break
        prefix = (
            LENGTH_CHECKSUMS[length]
            if length < SMALL_RECORD_BYTES
            else _crc32(_pack_length(length))
        )
        if _crc32(raw[start:end], prefix) != crc:
            break
        if kind != KIND_EVENT:
            if kind == KIND_COMMIT:
                offset = end
                continue
            break
        stream_start = start + _EVENT_HEADER_BYTES
        type_start = stream_start + stream_length
        metadata_start = type_start + type_length
        data_start = metadata_start + meta
        if found != position or data_start > end:
            break
        try:
            streams.append(raw[stream_start:type_start].decode("utf-8"))
        except UnicodeDecodeError:
            break
        versions.append(found_version)
        if type_length == len(last_type_bytes) and raw.startswith(last_type_bytes, type_start):
            event_type = last_type
        else:
            last_type_bytes = raw[type_start:metadata_start]
            found_type = type_names.get(last_type_bytes)
            if found_type is None:
                try:
                    found_type = type_names[last_type_bytes] = last_type_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    break
            event_type = last_type = found_type
        try:
            event_data = _loads(raw[data_start:end])
            event_metadata = _loads(raw[metadata_start:data_start]) if meta else EMPTY_METADATA
        except ValueError:
            break
        if meta and type(event_metadata) is not dict:
            break
        types.append(event_type)
        data.append(event_data)
        metadata.append(event_metadata)
        timestamps.append(timestamp)
        offset = end
        position += 1
        version += 1
    # A record refused after its stream and version were taken: take them back.
    del streams[len(types) :], versions[len(types) :]
    if position < stop:
        _decode_checked(run, offset, position, version, columns)


def _decode_stream_run(run: _Run, version: int, columns: Columns) -> None:
    """``_decode_run`` for a read of one stream: the replay of every activation.

    The same checks in fewer steps. Position and version move together, so one difference
    checks both; an event of the same type as the one before it (the common case) has its
    stream id and type checked with one comparison of their bytes, their lengths checked
    apart (so that no other split of the same bytes passes); a record too short for its header
    ends the loop through ``struct.error``. Anything refused is left to ``_decode_checked``.
    """
    raw = run.raw
    size = len(raw)
    expected = cast(bytes, run.stream)
    expected_length = len(expected)
    types, data, metadata = columns.types, columns.data, columns.metadata
    timestamps = columns.timestamps
    type_names = run.type_names
    # The stream id and type bytes of the last event decoded (of this run or one before it:
    # the bytes are compared, not trusted), and its type's name.
    last_key = run.last_key
    last_type_length = len(last_key) - expected_length if last_key else -1
    last_type = run.last_type
    offset = 0
    position = run.first
    stop = position + run.wanted
    shift = position - version  # An event's position minus its version, for every event.
    try:
        while position < stop:
            length, crc, kind, found, found_version, timestamp, stream_length, type_length, meta = (
                _unpack_framed_header_from(raw, offset)
            )
            start = offset + _FRAME_BYTES
            end = start + length
            if end > size:
                break
            prefix = (
                LENGTH_CHECKSUMS[length]
                if length < SMALL_RECORD_BYTES
                else _crc32(_pack_length(length))
            )
            if _crc32(raw[start:end], prefix) != crc:
                break
            if kind != KIND_EVENT:
                if kind == KIND_COMMIT:
                    offset = end
                    continue
                break
            stream_start = start + _EVENT_HEADER_BYTES
            metadata_start = stream_start + stream_length + type_length
            data_start = metadata_start + meta
            if found != position or found - found_version != shift or data_start > end:
                break
            if (
                type_length == last_type_length
                and stream_length == expected_length
                and raw.startswith(last_key, stream_start)
            ):
                event_type = last_type
            else:
                if stream_length != expected_length or not raw.startswith(expected, stream_start):
                    break
                type_bytes = raw[stream_start + stream_length : metadata_start]
                found_type = type_names.get(type_bytes)
                if found_type is None:
                    try:
                        found_type = type_names[type_bytes] = type_bytes.decode("utf-8")
                    except UnicodeDecodeError:
                        break
                event_type = last_type = run.last_type = found_type
                last_key = run.last_key = raw[stream_start:metadata_start]
                last_type_length = type_length
            event_data = _loads(raw[data_start:end])
            event_metadata = _loads(raw[metadata_start:data_start]) if meta else EMPTY_METADATA
            if meta and type(event_metadata) is not dict:
                break
            types.append(event_type)
            data.append(event_data)
            metadata.append(event_metadata)
            timestamps.append(timestamp)
            offset = end
            position += 1
    except (ValueError, struct.error):  # Not JSON (orjson), or too short for a header.
        pass
    if position < stop:
        _decode_checked(run, offset, position, position - shift, columns)


def _decode_checked(run: _Run, offset: int, position: int, version: int, columns: Columns) -> None:
    raw = run.raw
    stream_id = None if run.stream is None else run.stream.decode("utf-8")
    stop = run.first + run.wanted
    while position < stop:
        try:
            body_start, body_end = read_frame(raw, offset)
            # Only commit records lie between a run's events: a record of another kind is
            # refused where it is (decode_event), not skipped to blame the event after it.
            if raw[body_start] == KIND_COMMIT:
                offset = body_end
                continue
            fields = decode_event(raw[body_start:body_end])
            if fields.position != position:
                raise RecordError(
                    f"record holds position {fields.position} where the index says {position}"
                )
            if stream_id is not None:
                if fields.stream_id != stream_id:
                    raise RecordError(
                        f"record of stream {fields.stream_id!r} where the index says {stream_id!r}"
                    )
                if fields.version != version:
                    raise RecordError(
                        f"record holds version {fields.version} of {stream_id!r} where the "
                        f"index says {version}"
                    )
            event_data = decode_data(fields.data)
            event_metadata = decode_metadata(fields.metadata)
        except RecordError as error:
            raise _blamed(run, position, version) or JournalCorrupted(
                run.path, run.base + offset, f"{error} (found while reading)", during="read"
            ) from None
        except ValueError as error:  # orjson.JSONDecodeError: valid frame, not JSON.
            raise _blamed(run, position, version) or JournalCorrupted(
                run.path,
                run.base + offset,
                f"event data or metadata is not valid JSON ({error})",
                during="read",
            ) from None
        if stream_id is None:
            columns.streams.append(fields.stream_id)
            columns.versions.append(fields.version)
        columns.types.append(fields.type)
        columns.data.append(event_data)
        columns.metadata.append(event_metadata)
        columns.timestamps.append(fields.timestamp_ns)
        offset = body_end
        position += 1
        version += 1


def _blamed(run: _Run, position: int, version: int) -> JournalCorrupted | None:
    """The error naming another file than the record where the read stopped, if the run's
    segment was opened from its index file and that file is to blame (or the damage is
    elsewhere in the segment)."""
    if run.blame is None:
        return None
    return run.blame(position, run.stream, version)
