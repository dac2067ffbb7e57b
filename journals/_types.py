"""The values that cross the journal interface."""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})
"""The metadata of an event that has none (read-only, shared)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _datetime_from_ns(timestamp_ns: int) -> datetime:
    """The stamp as an aware UTC datetime, cut to the microsecond by integer arithmetic.

    Not rounded (through a float, half of all stamps came out up to a microsecond late): an
    event never reads as recorded after a moment taken once its append was answered.
    """
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1_000)


@dataclass(frozen=True, slots=True, init=False)
class NewEvent:
    """An event to append: a stable type name, JSON data and optional JSON metadata.

    Metadata is a mapping with str keys (a dict, say), or None for none; an append refuses
    anything else with ``EventEncodingError`` (an empty list or ``0`` too), as it refuses data
    that JSON cannot hold.
    """

    type: str
    data: Any
    metadata: Mapping[str, Any]

    def __init__(
        self, type: str, data: Any, metadata: Mapping[str, Any] | None = EMPTY_METADATA
    ) -> None:
        # Fields set through their slots: the frozen dataclass's own __init__ goes through
        # object.__setattr__ once per field, twice as slow, and one is built per event.
        _set_new_type(self, type)
        _set_new_data(self, data)
        _set_new_metadata(self, EMPTY_METADATA if metadata is None else metadata)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the journal holds it.

    ``version`` is its place in its stream (1, 2, ... gapless); ``position`` its place in the
    journal's global order (1, 2, ... gapless across all streams).
    """

    stream_id: str
    version: int
    position: int
    type: str
    data: Any
    metadata: Mapping[str, Any]
    recorded_at_ns: int

    @property
    def recorded_at(self) -> datetime:
        """When the event was appended, as an aware UTC datetime (the journal's wall clock,
        cut to the microsecond, never rounded up)."""
        return _datetime_from_ns(self.recorded_at_ns)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """Consecutive events of one stream, as columns: what ``Journal.read_chunks`` yields (and
    ``Journal.read_chunk`` answers, one at a time).

    Event ``i`` of the chunk is version ``first_version + i`` of ``stream_id``, at global
    position ``positions[i]``, with type ``types[i]``, data ``data[i]``, metadata
    ``metadata[i]`` and ``recorded_at_ns[i]``. Folding columns skips building one object per
    event, which is a large share of a replay; ``events()`` gives the ``RecordedEvent`` objects
    when they are wanted::

        async for chunk in journal.read_chunks("account-42"):
            for type_name, data in zip(chunk.types, chunk.data):
                state = evolve(state, decode(type_name, data))

    ``positions`` is an ``array('Q')`` (unsigned 64-bit) on every backend, as FileJournal's
    index keeps positions, so that a chunk compares equal whichever backend read it (an
    ``array`` never equals a ``list``); the other columns are sequences (lists, here).
    """

    stream_id: str
    first_version: int
    positions: array[int]
    types: Sequence[str]
    data: Sequence[Any]
    metadata: Sequence[Mapping[str, Any]]
    recorded_at_ns: Sequence[int]

    def __len__(self) -> int:
        return len(self.types)

    @property
    def last_version(self) -> int:
        """The version of the chunk's last event (``first_version - 1`` if it is empty)."""
        return self.first_version + len(self.types) - 1

    def events(self) -> list[RecordedEvent]:
        """The chunk's events as ``RecordedEvent`` objects, in order."""
        stream_id = self.stream_id
        return [
            recorded_event(stream_id, version, position, type, data, metadata, recorded_at_ns)
            for version, position, type, data, metadata, recorded_at_ns in zip(
                range(self.first_version, self.first_version + len(self.types)),
                self.positions,
                self.types,
                self.data,
                self.metadata,
                self.recorded_at_ns,
                strict=True,
            )
        ]


@dataclass(frozen=True, slots=True, init=False)
class AppendResult:
    """What a durable append answers: the stream's new version and the last event's position."""

    version: int
    position: int

    def __init__(self, version: int, position: int) -> None:
        _set_result_version(self, version)  # Through the slots, as NewEvent does.
        _set_result_position(self, position)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A stream's folded state at ``version``, as JSON data, with free-form JSON metadata."""

    stream_id: str
    version: int
    data: Any
    metadata: Mapping[str, Any]
    recorded_at_ns: int

    @property
    def recorded_at(self) -> datetime:
        return _datetime_from_ns(self.recorded_at_ns)


@dataclass(frozen=True, slots=True)
class JournalStatistics:
    """Counters since the journal was opened (not of the opening itself: its syncs, of a
    compaction of the snapshot file included, are not counted), plus sizes of what it holds now.

    ``appends``, ``appended_events`` and ``batches`` count the appends, their events and the
    group commits that made them durable. ``fsyncs`` counts every fsync the journal made:
    those of the batches, and also those of snapshot saves, of segment rolls (the finished
    segment's index file, the new segment and the directory) and of any other file it made
    durable; ``batch_fsyncs`` only those that made a batch durable (one per batch on a
    durable ``FileJournal``, none without fsync or in memory). ``events_per_fsync`` is
    ``appended_events / batch_fsyncs``: how many events one group commit's fsync made
    durable, the figure of group commit, which snapshots and rolls do not dilute.
    ``batch_sync_s`` is the time those writes and fsyncs took in all (from the write of a
    batch to the end of its fsync, in the writer thread), ``batch_sync_latency_s`` the mean
    of one: the disk's part of every command's wait. For the latency over an interval,
    divide the difference of two records' ``batch_sync_s`` by that of their
    ``batch_fsyncs``.

    ``streams``, ``events`` and ``head_position`` are what the journal holds now;
    ``bytes_written`` counts the bytes of the batches it wrote (event and commit records; not
    segment headers or snapshots; 0 in memory); ``index_bytes`` is the memory a
    ``FileJournal``'s index takes (about 12 bytes per event and 175 per stream plus its id's
    length), counted without a walk over its streams and so without the spare room its arrays
    keep to grow (a few positions per stream), 0 for a ``MemoryJournal``, which keeps no such
    index but every event whole. Reading these figures costs no walk over the streams.
    """

    streams: int
    events: int
    head_position: int
    appends: int
    appended_events: int
    batches: int
    fsyncs: int
    bytes_written: int
    index_bytes: int
    batch_fsyncs: int = 0  # Last and with a default: records built by position stay valid.
    batch_sync_s: float = 0.0  # The same.

    @property
    def events_per_fsync(self) -> float:
        """Events appended per fsync of a batch (0.0 before the first one)."""
        return self.appended_events / self.batch_fsyncs if self.batch_fsyncs else 0.0

    @property
    def batch_sync_latency_s(self) -> float:
        """The mean time a batch's write and fsync took (0.0 before the first one)."""
        return self.batch_sync_s / self.batch_fsyncs if self.batch_fsyncs else 0.0

    @property
    def index_bytes_per_event(self) -> float:
        return self.index_bytes / self.events if self.events else 0.0


def _slot_setters(cls: type, *names: str) -> tuple[Any, ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_new_object = object.__new__
(
    _set_stream_id,
    _set_version,
    _set_position,
    _set_type,
    _set_data,
    _set_metadata,
    _set_recorded_at_ns,
) = _slot_setters(
    RecordedEvent, "stream_id", "version", "position", "type", "data", "metadata", "recorded_at_ns"
)
_set_new_type, _set_new_data, _set_new_metadata = _slot_setters(
    NewEvent, "type", "data", "metadata"
)
_set_result_version, _set_result_position = _slot_setters(AppendResult, "version", "position")
_chunk_setters = _slot_setters(
    StreamChunk,
    "stream_id",
    "first_version",
    "positions",
    "types",
    "data",
    "metadata",
    "recorded_at_ns",
)


def stream_chunk(
    stream_id: str,
    first_version: int,
    positions: array[int],
    types: Sequence[str],
    data: Sequence[Any],
    metadata: Sequence[Mapping[str, Any]],
    recorded_at_ns: Sequence[int],
) -> StreamChunk:
    """``StreamChunk(...)``, built as ``recorded_event`` builds its events (once per read of a
    short stream, so once per activation of most entities)."""
    chunk: StreamChunk = _new_object(StreamChunk)
    set_stream_id, set_first, set_positions, set_types, set_data, set_metadata, set_at = (
        _chunk_setters
    )
    set_stream_id(chunk, stream_id)
    set_first(chunk, first_version)
    set_positions(chunk, positions)
    set_types(chunk, types)
    set_data(chunk, data)
    set_metadata(chunk, metadata)
    set_at(chunk, recorded_at_ns)
    return chunk


def recorded_event(
    stream_id: str,
    version: int,
    position: int,
    type: str,
    data: Any,
    metadata: Mapping[str, Any],
    recorded_at_ns: int,
) -> RecordedEvent:
    """``RecordedEvent(...)``, built for reads of many events at once.

    The same object the constructor makes, in about half its time: the frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` once per field, this sets the slots
    directly (measured ~0.43 us against ~0.79 us per event, a large share of a replay).
    """
    event: RecordedEvent = _new_object(RecordedEvent)
    _set_stream_id(event, stream_id)
    _set_version(event, version)
    _set_position(event, position)
    _set_type(event, type)
    _set_data(event, data)
    _set_metadata(event, metadata)
    _set_recorded_at_ns(event, recorded_at_ns)
    return event
