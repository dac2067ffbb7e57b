"""Validation and encoding of an append's input, on the hot path of ``FileJournal.append``.

The fast paths accept exactly what the shared checks of ``_validation`` accept and encode in
the same pass; anything they do not take goes through the shared checks, so error types and
messages are the same as every other backend's.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ._codec import RECORD_BODY_BYTES_MAX
from ._encoding import encode_data, encode_metadata
from ._exceptions import EventEncodingError
from ._types import NewEvent
from ._validation import (
    EVENT_TYPE_BYTES_MAX,
    EVENTS_PER_APPEND_MAX,
    STREAM_ID_BYTES_MAX,
    check_events,
    stream_id_bytes,
)

EncodedEvent = tuple[bytes, bytes, bytes]
"""(type, metadata, data) of one event, UTF-8 and JSON encoded."""

_dumps = orjson.dumps
_JSON_ERRORS = (TypeError, orjson.JSONEncodeError)
_DATA_BYTES_MAX = RECORD_BODY_BYTES_MAX - 600  # Room for the header, stream id and type.


def encode_stream_id(stream_id: object) -> bytes:
    """The UTF-8 bytes of a valid stream id; ValueError (from the shared check) otherwise."""
    if stream_id.__class__ is str:
        try:
            encoded = stream_id.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            if 0 < len(encoded) <= STREAM_ID_BYTES_MAX:
                return encoded
    return stream_id_bytes(stream_id)


def encode_events(events: Sequence[NewEvent]) -> list[EncodedEvent]:
    """Check and encode an append's events; raise ValueError or EventEncodingError."""
    if events.__class__ is list and 0 < len(events) <= EVENTS_PER_APPEND_MAX:
        encoded: list[EncodedEvent] = []
        for index, event in enumerate(events):
            if event.__class__ is not NewEvent:
                break
            event_type = event.type
            if event_type.__class__ is not str or not event_type:
                break
            try:
                type_bytes = event_type.encode("utf-8")
            except UnicodeEncodeError:
                break
            if len(type_bytes) > EVENT_TYPE_BYTES_MAX:
                break
            encoded.append(_encode(index, event, type_bytes))
        else:
            return encoded
    check_events(events)  # Raises for whatever the fast path did not take.
    return [_encode(index, event, event.type.encode("utf-8")) for index, event in enumerate(events)]


def _encode(index: int, event: NewEvent, type_bytes: bytes) -> EncodedEvent:
    try:
        data = _dumps(event.data)
    except _JSON_ERRORS:
        data = encode_data(event.data, f"data of event {index} ({event.type!r})")
    metadata = event.metadata
    encoded_metadata = (
        encode_metadata(metadata, f"metadata of event {index} ({event.type!r})")
        if metadata
        else b""
    )
    if len(data) + len(encoded_metadata) > _DATA_BYTES_MAX:
        raise EventEncodingError(
            f"event {index} ({event.type!r}) is {len(data) + len(encoded_metadata)} bytes "
            f"encoded; the limit is {_DATA_BYTES_MAX}. Nothing of this append was written."
        )
    return type_bytes, encoded_metadata, data
