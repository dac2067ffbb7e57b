"""Checks on what callers hand the journal, shared by every backend."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, SupportsIndex, cast

import orjson

from ._codec import COMMIT_FRAME_BYTES, EVENT_HEADER_BYTES, FRAME_BYTES, SEGMENT_HEADER_BYTES
from ._encoding import non_finite_float_at
from ._exceptions import EventEncodingError, InvalidStreamId
from ._types import NewEvent

STREAM_ID_BYTES_MAX = 255
"""The longest stream id, in UTF-8 bytes."""

EVENT_TYPE_BYTES_MAX = 255
"""The longest event type name, in UTF-8 bytes."""

EVENTS_PER_APPEND_MAX = 10_000
"""The most events one append may carry (an append is one atomic unit on disk)."""

APPEND_BYTES_MAX = 1 << 30
"""The most bytes one append's event records may take together: 1 GiB, counted as a
FileJournal writes them (``event_record_bytes`` each). An append is written whole in one batch,
and a segment's record offsets are 32-bit: see ``SEGMENT_BYTES_MAX``."""

RECORD_OVERHEAD_BYTES = FRAME_BYTES + EVENT_HEADER_BYTES
"""The bytes of an event record besides its stream id, type, metadata and data."""

SEGMENT_BYTES_MAX = 1 << 31
"""The largest ``segment_bytes_max``: 2 GiB. Invariant: every record offset of a segment is
below 4 GiB, as the index keeps them in 32 bits. A batch goes into a segment that holds it
under ``segment_bytes_max`` or, larger than that, into a segment of its own, after the header;
it holds less than ``batch_bytes_max`` (at most this) before its last append, which holds at
most ``APPEND_BYTES_MAX``. So a segment ends below 64 + 2 GiB + 1 GiB + a commit record."""

SEGMENT_FILE_BYTES_MAX = (
    SEGMENT_HEADER_BYTES + SEGMENT_BYTES_MAX + APPEND_BYTES_MAX + COMMIT_FRAME_BYTES
)
"""The most bytes a segment file can hold (see ``SEGMENT_BYTES_MAX``), a torn tail included,
which is part of one batch. A larger file is not a segment as a journal wrote it (a file
extended by mistake, a damaged file system): opening and the tools refuse it by its size
rather than read it whole into memory."""


def whole_number(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int; ValueError unless it is a whole number from ``minimum`` to
    ``maximum`` (a size or a bound: nothing may grow without one)."""
    try:
        number = operator.index(cast(SupportsIndex, value))
    except TypeError:
        number = None
    if (
        number is None
        or isinstance(value, bool)
        or number < minimum
        or (maximum is not None and number > maximum)
    ):
        limits = f"at least {minimum:,}" if maximum is None else f"{minimum:,} to {maximum:,}"
        raise ValueError(f"{name} must be a whole number of {limits}, not {value!r}")
    return number


def switch(name: str, value: object) -> bool:
    """``value`` if it is True or False; ValueError otherwise. A switch takes a bool only:
    read as a truth value, ``None`` or ``0`` would turn it off and ``"false"`` on."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def journal_sizes(segment: object, batch: object, queue: object) -> tuple[int, int, int]:
    """A FileJournal's ``segment_bytes_max``, ``batch_bytes_max`` and ``queue_bytes_max``,
    checked; a batch is at most a segment, and the queue holds at least a batch."""
    segment_bytes = whole_number("segment_bytes_max", segment, 4096, SEGMENT_BYTES_MAX)
    batch_bytes = min(whole_number("batch_bytes_max", batch, 1), segment_bytes)
    return segment_bytes, batch_bytes, max(whole_number("queue_bytes_max", queue, 1), batch_bytes)


def stream_id_bytes(stream_id: object) -> bytes:
    """Answer the UTF-8 encoding of a valid stream id; raise InvalidStreamId for an invalid one."""
    if not isinstance(stream_id, str):
        raise InvalidStreamId(f"a stream id must be a str, not {type(stream_id).__name__}")
    if not stream_id:
        raise InvalidStreamId("a stream id must not be empty")
    try:
        encoded = str.encode(stream_id, "utf-8")  # Its text, whatever a subclass's encode does.
    except UnicodeEncodeError as error:
        raise InvalidStreamId(
            f"stream id {stream_id!r} is not valid UTF-8: {error.reason}"
        ) from None
    if len(encoded) > STREAM_ID_BYTES_MAX:
        raise InvalidStreamId(
            f"stream id is {len(encoded)} bytes long in UTF-8; the limit is {STREAM_ID_BYTES_MAX}"
        )
    return encoded


def plain_str(text: str) -> str:
    """``text`` as a plain ``str``: a stream id or event type given as a str subclass (a
    ``StrEnum`` member) reads back as the str a journal decodes from its records."""
    return text if text.__class__ is str else str.__str__(text)


def events_of_columns(types: Sequence[str], data: Sequence[object]) -> list[NewEvent]:
    """The ``NewEvent`` list of an append given as columns; ValueError if their lengths differ."""
    if len(types) != len(data):
        raise ValueError(
            f"an append's columns must be as long as each other: {len(types)} event types "
            f"but {len(data)} data values"
        )
    return list(map(NewEvent, types, data))


def check_events(events: Sequence[NewEvent]) -> None:
    """Raise ValueError unless ``events`` is a non-empty, bounded list of NewEvent."""
    if isinstance(events, NewEvent):
        raise ValueError("append takes a list of NewEvent, not a single NewEvent")
    if not isinstance(events, Sequence):
        # A generator or an iterator in particular: its length is not known before it is
        # consumed, and an append is checked whole before anything of it is written.
        raise ValueError(
            f"append takes a list of NewEvent, not a {type(events).__name__}: pass "
            f"list(events) to append what it yields"
        )
    if not events:
        raise ValueError("an append needs at least one event")
    if len(events) > EVENTS_PER_APPEND_MAX:
        raise ValueError(
            f"an append may carry at most {EVENTS_PER_APPEND_MAX} events, not {len(events)}"
        )
    for event in events:
        if not isinstance(event, NewEvent):
            raise ValueError(f"append takes NewEvent values, not {type(event).__name__}")
        if not isinstance(event.type, str) or not event.type:
            raise ValueError("an event type must be a non-empty str")
        try:
            type_bytes = str.encode(event.type, "utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"event type {event.type!r} is not valid UTF-8") from None
        if len(type_bytes) > EVENT_TYPE_BYTES_MAX:
            raise ValueError(
                f"event type {event.type[:40]!r}... is {len(type_bytes)} bytes long in UTF-8; "
                f"the limit is {EVENT_TYPE_BYTES_MAX}"
            )


def event_record_bytes(stream_bytes: bytes, type_bytes: bytes, metadata: bytes, data: bytes) -> int:
    """The bytes of one event's record: what ``APPEND_BYTES_MAX`` counts."""
    return RECORD_OVERHEAD_BYTES + len(stream_bytes) + len(type_bytes) + len(metadata) + len(data)


def append_too_large(size: int, count: int, limit: int) -> EventEncodingError:
    """The refusal of an append whose records take ``size`` bytes, over ``limit``
    (``APPEND_BYTES_MAX``)."""
    return EventEncodingError(
        f"the append's {count:,} events take {size:,} bytes as records; one append may take "
        f"at most {limit:,}. Nothing of this append was written. Split it "
        f"into several appends, or keep large payloads outside the journal (in a file or blob "
        f"store) and put a reference in the event."
    )


def snapshot_version(stream_id: str, version: object, durable_version: int) -> int:
    """A snapshot's ``version`` as an int; ValueError unless it is a whole number from 1 to
    the stream's ``durable_version`` (a snapshot is taken at a version the journal holds)."""
    try:
        number = operator.index(cast(SupportsIndex, version))
    except TypeError:
        number = None
    if number is None or isinstance(version, bool):
        raise ValueError(
            f"a snapshot's version is the stream version it was taken at, a whole number "
            f"(an int), not {version!r}"
        )
    if not 1 <= number <= durable_version:
        raise ValueError(
            f"a snapshot of stream {stream_id!r} must be at a durable version "
            f"(1 to {durable_version}), not {number}"
        )
    return number


def check_version_range(from_version: int, to_version: int | None) -> None:
    """Raise ValueError unless ``from_version`` (from 1) and ``to_version`` (None: to the end;
    from ``from_version - 1``, an empty range) are whole numbers: ints, not bools or floats."""
    if (
        from_version.__class__ is int
        and from_version >= 1
        and (to_version is None or (to_version.__class__ is int and to_version >= from_version - 1))
    ):
        return  # Plain ints in range: every read of the runtime's, checked in a few steps.
    first = read_bound("from_version", from_version)
    if first < 1:
        raise ValueError(f"from_version starts at 1, not {first}")
    if to_version is not None:
        last = read_bound("to_version", to_version)
        if last < first - 1:
            raise ValueError(f"to_version {last} is below from_version {first}")


def check_position_range(from_position: int, to_position: int | None) -> None:
    """Raise ValueError unless ``from_position`` (from 1) and ``to_position`` (None: to the
    head) are whole numbers: ints, not bools or floats."""
    if read_bound("from_position", from_position) < 1:
        raise ValueError(f"from_position starts at 1, not {from_position}")
    if to_position is not None:
        read_bound("to_position", to_position)


def read_bound(name: str, value: object) -> int:
    """``value`` as an int; ValueError unless it is a whole number (an int, or a value that
    stands for one, such as an ``IntEnum`` member), not a bool or a float."""
    try:
        number = operator.index(cast(SupportsIndex, value))
    except TypeError:
        number = None
    if number is None or isinstance(value, bool):
        what = "a global position" if name.endswith("position") else "a stream version"
        raise ValueError(f"{name} is {what}, a whole number (an int), not {value!r}")
    return number


def check_max_version(max_version: int | None) -> None:
    """Raise ValueError unless a snapshot's ``max_version`` is None or a whole number."""
    if max_version is not None and max_version.__class__ is not int:
        read_bound("max_version", max_version)


def wanted_metadata(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metadata a snapshot must hold (``load_snapshot_matching``) in the form a load
    answers: put through JSON as a save puts it, so that a tuple is compared as the list, and
    a UUID, a datetime or a dataclass as the JSON value, that a snapshot saved with it holds.

    Raises TypeError unless ``metadata`` is a mapping, and ValueError for what no snapshot can
    hold (what a save refuses with ``EventEncodingError``)."""
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"the metadata a snapshot must hold is a mapping of keys to values, such as "
            f"{{'schema': 2}}, not {type(metadata).__name__}"
        )
    try:
        encoded = orjson.dumps(dict(metadata))
    except TypeError as error:  # orjson.JSONEncodeError is one
        raise ValueError(
            f"the metadata a snapshot must hold cannot be stored as JSON ({error}), so no "
            f"snapshot holds it; look for str keys and JSON-compatible values, as a save "
            f"stores them"
        ) from None
    if encoded.find(b"null") >= 0:
        where = non_finite_float_at(metadata)
        if where is not None:
            raise ValueError(
                f"the metadata a snapshot must hold has a non-finite float ({where}), which "
                f"no snapshot holds: JSON has no NaN or Infinity, and a save refuses them"
            )
    return cast(Mapping[str, Any], orjson.loads(encoded))


def metadata_holds(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a snapshot's ``metadata`` holds every item of ``wanted`` (equal values)."""
    missing = _MISSING
    return all(metadata.get(key, missing) == value for key, value in wanted.items())


_MISSING = object()


def check_expected_version(expected_version: int | None) -> None:
    """Raise ValueError unless ``expected_version`` is None or a whole number from 0: an int,
    not a bool (``True`` would be taken for version 1, ``False`` for a new stream)."""
    if expected_version is not None and (
        not isinstance(expected_version, int)
        or isinstance(expected_version, bool)
        or expected_version < 0
    ):
        raise ValueError(
            f"expected_version is a stream version (0 for a new stream) or None to skip the "
            f"check, not {expected_version!r}"
        )


KEY_BYTES_MAX = 64
"""The longest key of the hash chain: BLAKE2b's keyed mode takes 1 to 64 bytes."""


def check_key(key: object) -> bytes | None:
    """``key`` as an immutable ``bytes`` copy, or None (no key); ValueError unless it is None
    or bytes-like (``bytes``, ``bytearray``, ``memoryview``...) of 1 to 64 bytes.

    Every entry point that hashes a chain checks its key here first, before it creates or
    reads a file. A ``str`` is refused rather than encoded: the chain hashes bytes, and which
    bytes a text stands for is the caller's to say. An empty key in particular is refused,
    never used: BLAKE2b hashes with an empty key exactly as without one, so a keyed journal
    checked with it would accept a chain anyone can compute. The copy keeps a caller's later
    change to a ``bytearray`` from changing the key the journal hashes with.
    """
    if key is None:
        return None
    try:
        # memoryview, not bytes(): bytes(5) is five zero bytes, not a refusal.
        key_bytes = memoryview(cast(bytes, key)).tobytes()
    except TypeError:
        hint = (
            " (pass the key's bytes, such as key.encode() of the text it was made from)"
            if isinstance(key, str)
            else ""
        )
        raise ValueError(
            f"a key is bytes, 1 to {KEY_BYTES_MAX} of them, not {type(key).__name__}{hint}; "
            f"use the key the journal was written with"
        ) from None
    if not 1 <= len(key_bytes) <= KEY_BYTES_MAX:
        ending = (
            " (it ends with a newline, which is part of the key: store the key's bytes alone)"
            if key_bytes.endswith(b"\n")
            else ""
        )
        raise ValueError(
            f"a key is 1 to {KEY_BYTES_MAX} bytes long, not {len(key_bytes)}{ending}; use the "
            f"key the journal was written with"
        )
    return key_bytes
