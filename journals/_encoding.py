"""JSON encoding of event data and metadata, shared by every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ._exceptions import EventEncodingError
from ._types import EMPTY_METADATA

_dumps = orjson.dumps
_loads = orjson.loads


def encode_data(value: Any, what: str) -> bytes:
    """Encode ``value`` as JSON bytes or raise EventEncodingError naming ``what`` it was."""
    try:
        return _dumps(value)
    except (TypeError, orjson.JSONEncodeError) as error:
        raise EventEncodingError(
            f"{what} cannot be encoded as JSON ({error}); nothing of this append was written. "
            f"Use str keys and JSON-compatible values (dataclasses, datetimes and UUIDs are "
            f"accepted and stored in their JSON form)."
        ) from None


def encode_metadata(metadata: Mapping[str, Any], what: str) -> bytes:
    """Encode metadata; an empty mapping encodes to b"" so reads can skip decoding it."""
    if not metadata:
        return b""
    if not isinstance(metadata, dict):
        metadata = dict(metadata)
    return encode_data(metadata, what)


def decode_data(raw: bytes) -> Any:
    return _loads(raw)


def decode_metadata(raw: bytes) -> Mapping[str, Any]:
    if not raw:
        return EMPTY_METADATA
    decoded: Mapping[str, Any] = _loads(raw)
    return decoded
