"""JSON encoding of event data and metadata, shared by every backend."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, cast

import orjson

from ._codec import RECORD_BODY_BYTES_MAX, SNAPSHOT_HEADER_BYTES, RecordError
from ._exceptions import EventEncodingError
from ._types import EMPTY_METADATA, NewEvent

_dumps = orjson.dumps
_loads = orjson.loads

EVENT_BYTES_MAX = RECORD_BODY_BYTES_MAX - 600
"""The most bytes an event's encoded data and metadata may hold together: what one record holds,
less room for its header, stream id and type. Every journal refuses a larger event alike."""


def encode_event(index: int, event: NewEvent) -> tuple[bytes, bytes]:
    """The JSON data and metadata of an append's event number ``index``, checked as every
    backend checks them; EventEncodingError if they cannot be encoded or are too large."""
    data = encode_data(event.data, f"data of event {index} ({event.type!r})")
    metadata = event.metadata
    encoded_metadata = (
        b""
        if metadata is EMPTY_METADATA
        else encode_metadata(metadata, f"metadata of event {index} ({event.type!r})")
    )
    size = len(data) + len(encoded_metadata)
    if size > EVENT_BYTES_MAX:
        raise EventEncodingError(
            f"event {index} ({event.type!r}) is {size} bytes encoded; the limit is "
            f"{EVENT_BYTES_MAX}. Nothing of this append was written. Keep large payloads "
            f"outside the journal (in a file or blob store) and put a reference in the event."
        )
    return data, encoded_metadata


def encode_data(value: Any, what: str) -> bytes:
    """Encode ``value`` as JSON bytes or raise EventEncodingError naming ``what`` it was."""
    try:
        encoded = _dumps(value)
    except (TypeError, orjson.JSONEncodeError) as error:
        raise EventEncodingError(
            f"{what} cannot be encoded as JSON ({error}); nothing of this append was written. "
            f"Use str keys and JSON-compatible values (dataclasses, datetimes and UUIDs are "
            f"accepted and stored in their JSON form)."
        ) from None
    if encoded.find(b"null") >= 0:
        where = non_finite_float_at(value)
        if where is not None:
            raise EventEncodingError(
                f"{what} holds a non-finite float ({where}); JSON has no NaN or Infinity, so it "
                f"would be stored as null and read back differently. Nothing of this append "
                f"was written. Store such a value as a string or None, or refuse it earlier."
            )
    return encoded


def non_finite_float_at(value: Any) -> str | None:
    """Where ``value`` holds a NaN or an infinity that orjson would write as ``null``, or None.

    Walks what orjson serializes (dicts, lists, tuples, dataclass fields not starting with an
    underscore, enum values). Only called when the encoded bytes contain ``null`` (a None, a
    non-finite float or a string containing that word), so the hot path pays one substring
    test per event and never this walk for data without ``null``.
    """
    return _non_finite_float_at(value, "the value")


def _non_finite_float_at(value: Any, path: str) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} at {path}"
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif isinstance(value, enum.Enum):
        return _non_finite_float_at(value.value, f"{path}.value")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = (
            (field.name, getattr(value, field.name))
            for field in dataclasses.fields(value)
            if not field.name.startswith("_")  # orjson leaves these out.
        )
    else:
        return None
    for key, item in items:
        found = _non_finite_float_at(item, f"{path}[{key!r}]")
        if found is not None:
            return found
    return None


def encode_metadata(metadata: Mapping[str, Any] | None, what: str) -> bytes:
    """Encode metadata; an empty mapping (or None) encodes to b"" so reads can skip decoding it.

    EventEncodingError for metadata that is not a mapping (empty or not: ``[]`` and ``0`` are
    no more metadata than ``[1]``), as for one that is not JSON.
    """
    if metadata is None:
        return b""
    if not isinstance(metadata, dict):
        if not isinstance(metadata, Mapping):
            raise EventEncodingError(
                f"{what} must be a mapping of str keys to JSON values, not "
                f"{type(metadata).__name__}; nothing was written. Pass a dict, or leave the "
                f"metadata out."
            )
        metadata = dict(metadata)
    if not metadata:
        return b""
    return encode_data(metadata, what)


def check_snapshot_size(stream_id: str, stream_bytes: bytes, metadata: bytes, data: bytes) -> None:
    """Raise EventEncodingError unless the encoded snapshot fits in one record.

    Every journal refuses the same snapshots: a FileJournal stores one as one record, and a
    record larger than ``RECORD_BODY_BYTES_MAX`` could not be read back (a length above it can
    only be damage).
    """
    room = RECORD_BODY_BYTES_MAX - SNAPSHOT_HEADER_BYTES - len(stream_bytes)
    if len(data) + len(metadata) > room:
        raise EventEncodingError(
            f"the snapshot of stream {stream_id!r} is too large: its data and metadata are "
            f"{len(data) + len(metadata):,} bytes encoded ({len(data):,} and {len(metadata):,}), "
            f"and with its header and stream id a snapshot record holds at most {room:,} of "
            f"them ({RECORD_BODY_BYTES_MAX:,} bytes in all). Nothing was written. Snapshot a "
            f"smaller state (an entity without a snapshot is rebuilt from its events)."
        )


def decode_data(raw: bytes) -> Any:
    """The value of JSON bytes, as a journal reads stored data back (what ``encode_data``
    wrote); orjson's ``JSONDecodeError``, a ``ValueError``, for bytes that are not JSON."""
    return _loads(raw)


def decode_metadata(raw: bytes) -> Mapping[str, Any]:
    """Stored metadata: a JSON object, or nothing. Raises ``ValueError`` (orjson's) for bytes
    that are not JSON and ``RecordError`` for JSON that is not an object."""
    if not raw:
        return EMPTY_METADATA
    decoded = _loads(raw)
    if type(decoded) is not dict:
        raise RecordError("metadata is not a JSON object")
    return cast(Mapping[str, Any], decoded)
