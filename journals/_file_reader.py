"""Reading committed events back from segment files. Runs in a worker thread.

Positions are grouped into runs of consecutive positions within one segment; each run is one
``os.pread``. Every record read is checked again (frame checksum, kind, position): a pair to the
checks made before it was written.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence

import orjson

from ._codec import (
    EVENT_HEADER,
    FRAME,
    KIND_COMMIT,
    KIND_EVENT,
    RecordError,
    decode_event,
    read_frame,
)
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._index import JournalIndex
from ._types import EMPTY_METADATA, RecordedEvent, recorded_event

_crc32 = zlib.crc32
_loads = orjson.loads
_unpack_frame_from = FRAME.unpack_from
_unpack_event_header_from = EVENT_HEADER.unpack_from
_FRAME_BYTES = FRAME.size
_EVENT_HEADER_BYTES = EVENT_HEADER.size


def read_positions(
    index: JournalIndex,
    read_fds: dict[int, int],
    positions: Sequence[int],
    stream_id: str | None = None,
) -> list[RecordedEvent]:
    """The events at ``positions`` (each committed), in the order given.

    With ``stream_id``, every event read must belong to that stream (a pair to the index).
    """
    events: list[RecordedEvent] = []
    count = len(positions)
    start_index = 0
    while start_index < count:
        first = positions[start_index]
        segment = index.segment_of(first)
        last_in_segment = segment.last_position
        end_index = start_index + 1
        while (
            end_index < count
            and positions[end_index] == positions[end_index - 1] + 1
            and positions[end_index] <= last_in_segment
        ):
            end_index += 1
        start, _ = segment.span(first)
        _, end = segment.span(positions[end_index - 1])
        raw = os.pread(read_fds[segment.first_position], end - start, start)
        _decode_run(raw, segment.path, start, first, end_index - start_index, stream_id, events)
        start_index = end_index
    return events


def _decode_run(
    raw: bytes,
    path: str,
    base: int,
    first: int,
    wanted: int,
    stream_id: str | None,
    events: list[RecordedEvent],
) -> None:
    """Decode ``wanted`` events from ``raw``, which starts at the event at ``first``.

    The fast loop makes the same checks as ``read_frame`` and ``decode_event`` in one pass,
    without intermediate objects; at anything it does not take (damage, a stream id that is
    not the expected one, an unusual field) it hands over to ``_decode_checked``, which makes
    the checks one by one and raises with the exact reason.
    """
    size = len(raw)
    expected = None if stream_id is None else stream_id.encode("utf-8")
    wanted_stream = "" if stream_id is None else stream_id
    expected_length = -1 if expected is None else len(expected)
    types: dict[bytes, str] = {}
    offset = 0
    position = first
    stop = first + wanted
    while position < stop:
        if size - offset < _FRAME_BYTES:
            break
        length, crc = _unpack_frame_from(raw, offset)
        start = offset + _FRAME_BYTES
        end = start + length
        if length < _EVENT_HEADER_BYTES or end > size:
            break
        if _crc32(raw[start:end], _crc32(raw[offset : offset + 4])) != crc:
            break
        kind, found, version, timestamp, stream_length, type_length, metadata_length = (
            _unpack_event_header_from(raw, start)
        )
        if kind != KIND_EVENT:
            if kind == KIND_COMMIT:
                offset = end
                continue
            break
        type_start = start + _EVENT_HEADER_BYTES + stream_length
        metadata_start = type_start + type_length
        data_start = metadata_start + metadata_length
        if found != position or data_start > end:
            break
        if expected is None:
            try:
                stream = raw[start + _EVENT_HEADER_BYTES : type_start].decode("utf-8")
            except UnicodeDecodeError:
                break
        elif (
            stream_length != expected_length
            or raw[start + _EVENT_HEADER_BYTES : type_start] != expected
        ):
            break
        else:
            stream = wanted_stream
        type_bytes = raw[type_start:metadata_start]
        event_type = types.get(type_bytes)
        if event_type is None:
            try:
                event_type = types[type_bytes] = type_bytes.decode("utf-8")
            except UnicodeDecodeError:
                break
        try:
            data = _loads(raw[data_start:end])
            metadata = _loads(raw[metadata_start:data_start]) if metadata_length else EMPTY_METADATA
        except ValueError:
            break
        events.append(
            recorded_event(stream, version, position, event_type, data, metadata, timestamp)
        )
        offset = end
        position += 1
    if position < stop:
        _decode_checked(raw, path, base, offset, position, stop, stream_id, events)


def _decode_checked(
    raw: bytes,
    path: str,
    base: int,
    offset: int,
    position: int,
    stop: int,
    stream_id: str | None,
    events: list[RecordedEvent],
) -> None:
    while position < stop:
        try:
            body_start, body_end = read_frame(raw, offset)
            if raw[body_start] != KIND_EVENT:
                offset = body_end
                continue
            fields = decode_event(raw[body_start:body_end])
            if fields.position != position:
                raise RecordError(
                    f"record holds position {fields.position} where the index says {position}"
                )
            if stream_id is not None and fields.stream_id != stream_id:
                raise RecordError(
                    f"record of stream {fields.stream_id!r} where the index says {stream_id!r}"
                )
            events.append(
                RecordedEvent(
                    fields.stream_id,
                    fields.version,
                    position,
                    fields.type,
                    decode_data(fields.data),
                    decode_metadata(fields.metadata),
                    fields.timestamp_ns,
                )
            )
        except RecordError as error:
            raise JournalCorrupted(path, base + offset, f"{error} (found while reading)") from None
        except ValueError as error:  # orjson.JSONDecodeError: valid frame, not JSON.
            raise JournalCorrupted(
                path, base + offset, f"event data or metadata is not valid JSON ({error})"
            ) from None
        offset = body_end
        position += 1


def close_fds(fds: dict[int, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()
