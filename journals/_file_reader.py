"""Reading committed events back from segment files. Runs in a worker thread.

Positions are grouped into runs of consecutive positions within one segment; each run is one
``os.pread``. Every record read is checked again (frame checksum, kind, position): a pair to the
checks made before it was written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._codec import KIND_EVENT, RecordError, decode_event, read_frame
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._index import JournalIndex
from ._types import RecordedEvent


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
    offset = 0
    position = first
    stop = first + wanted
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
