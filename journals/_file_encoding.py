"""Validation and encoding of an append's input, on the hot path of ``FileJournal.append``.

The fast paths accept exactly what the shared checks of ``_validation`` accept and encode in
the same pass; anything they do not take goes through the shared checks, so error types and
messages are the same as every other backend's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ._encoding import EVENT_BYTES_MAX, encode_event, non_finite_float_at
from ._types import EMPTY_METADATA, NewEvent
from ._validation import (
    EVENT_TYPE_BYTES_MAX,
    EVENTS_PER_APPEND_MAX,
    STREAM_ID_BYTES_MAX,
    check_events,
    events_of_columns,
    stream_id_bytes,
)

EncodedEvent = tuple[bytes, bytes, bytes]
"""(type, metadata, data) of one event, UTF-8 and JSON encoded."""

_dumps = orjson.dumps
_JSON_ERRORS = (TypeError, orjson.JSONEncodeError)
_DATA_BYTES_MAX = EVENT_BYTES_MAX  # A module global: the fast paths compare against it.


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


def remembered_stream_id(stream_id: object) -> bytes:
    """``encode_stream_id``, remembering the answer for the streams appended to lately.

    The bytes of a stream that is appended to again are one lookup away (a hot stream's or
    a live actor's); the memory is bounded by ``_STREAM_BYTES_MAX`` streams.
    """
    if stream_id.__class__ is str:
        encoded = _STREAM_BYTES.get(stream_id)
        if encoded is not None:
            return encoded
        encoded = encode_stream_id(stream_id)
        if len(_STREAM_BYTES) >= _STREAM_BYTES_MAX:
            _STREAM_BYTES.clear()
        _STREAM_BYTES[stream_id] = encoded
        return encoded
    return encode_stream_id(stream_id)


_STREAM_BYTES: dict[str, bytes] = {}
_STREAM_BYTES_MAX = 16_384


def encode_events(events: Sequence[NewEvent]) -> list[EncodedEvent]:
    """Check and encode an append's events; raise ValueError or EventEncodingError."""
    if events.__class__ is list and 0 < len(events) <= EVENTS_PER_APPEND_MAX:
        encoded: list[EncodedEvent] = []
        type_bytes_of = _TYPE_BYTES
        for event in events:
            if event.__class__ is not NewEvent:
                break
            metadata = event.metadata
            try:  # TypeError: also an unhashable type name.
                type_bytes = type_bytes_of.get(event.type) or _valid_type_bytes(event.type)
                data = _dumps(event.data)
                if metadata is EMPTY_METADATA or (not metadata and metadata.__class__ is dict):
                    encoded_metadata = b""
                else:  # Anything but a non-empty dict: b"null", refused below with its message.
                    encoded_metadata = _dumps(
                        metadata if metadata.__class__ is dict and metadata else None
                    )
            except _JSON_ERRORS:
                break
            if (
                type_bytes is None
                or encoded_metadata == b"null"
                or len(data) + len(encoded_metadata) > _DATA_BYTES_MAX
                or (data.find(b"null") >= 0 and non_finite_float_at(event.data) is not None)
                or (
                    encoded_metadata.find(b"null") >= 0
                    and non_finite_float_at(metadata) is not None
                )
            ):
                # An invalid type, metadata not a dict, too large, or a NaN or infinity that
                # orjson writes as null: refused below with the shared message.
                break
            encoded.append((type_bytes, encoded_metadata, data))
        else:
            return encoded
    # Whatever the fast path did not take, with the shared checks and their messages.
    check_events(events)
    return [
        _encode(index, event, str.encode(event.type, "utf-8")) for index, event in enumerate(events)
    ]


def encode_columns(types: Sequence[str], data: Sequence[Any]) -> list[EncodedEvent]:
    """``encode_events`` for events given as columns of type names and data, without metadata.

    Raises what ``encode_events`` raises for the same events as ``NewEvent`` objects, and
    ``ValueError`` when the columns differ in length.
    """
    if types.__class__ is list and data.__class__ is list:
        count = len(types)
        if count == 1 and len(data) == 1:
            one = encode_one(types[0], data[0])
            if one is not None:
                return [(one[0], b"", one[1])]
        elif 0 < count <= EVENTS_PER_APPEND_MAX and count == len(data):
            encoded: list[EncodedEvent] = []
            type_bytes_of = _TYPE_BYTES
            for event_type, value in zip(types, data, strict=True):
                try:  # TypeError: also an unhashable type name.
                    type_bytes = type_bytes_of.get(event_type) or _valid_type_bytes(event_type)
                    encoded_data = _dumps(value)
                except _JSON_ERRORS:
                    break
                if (
                    type_bytes is None
                    or len(encoded_data) > _DATA_BYTES_MAX
                    or (encoded_data.find(b"null") >= 0 and non_finite_float_at(value) is not None)
                ):
                    break
                encoded.append((type_bytes, b"", encoded_data))
            else:
                return encoded
    # Whatever the fast paths did not take: as NewEvent objects, with every check.
    return encode_events(events_of_columns(types, data))


def encode_one(event_type: Any, value: Any) -> tuple[bytes, bytes] | None:
    """The type bytes and JSON data of one event of a type seen before, or None.

    None when the type name was not seen yet, or is invalid, or the data is not JSON, holds a
    NaN or an infinity (which orjson writes as null), or is too large: ``encode_columns`` then
    encodes the event with every check and its message.
    """
    try:  # TypeError: also an unhashable type name.
        type_bytes = _TYPE_BYTES.get(event_type)
        encoded_data = _dumps(value)
    except _JSON_ERRORS:
        return None
    if type_bytes is None or len(encoded_data) > _DATA_BYTES_MAX:
        return None
    # A C-level substring test per event; the walk only runs for data that holds a null.
    # (``find``, not ``in``: on CPython 3.11 ``bytes in bytes`` first tries the needle as an
    # int and clears the error, which doubles its cost.)
    if encoded_data.find(b"null") >= 0 and non_finite_float_at(value) is not None:
        return None
    return type_bytes, encoded_data


_TYPE_BYTES: dict[str, bytes] = {}
"""Valid event type names seen so far and their UTF-8 bytes (most appends use a few types)."""
_TYPE_BYTES_MAX = 4096


def _valid_type_bytes(event_type: object) -> bytes | None:
    """The UTF-8 bytes of a valid event type name (remembered), or None for an invalid one."""
    if event_type.__class__ is not str or not event_type:
        return None
    assert isinstance(event_type, str)
    try:
        type_bytes = event_type.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(type_bytes) > EVENT_TYPE_BYTES_MAX:
        return None
    if len(_TYPE_BYTES) >= _TYPE_BYTES_MAX:
        _TYPE_BYTES.clear()  # Bounded: an application with ever new type names still works.
    _TYPE_BYTES[event_type] = type_bytes
    return type_bytes


def _encode(index: int, event: NewEvent, type_bytes: bytes) -> EncodedEvent:
    data, metadata = encode_event(index, event)  # Shared with every backend: same refusals.
    return type_bytes, metadata, data
