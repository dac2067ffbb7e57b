"""MemoryJournal: the journal contract held in memory, with the same semantics as FileJournal."""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import anyio
import anyio.lowlevel

from ._encoding import decode_data, decode_metadata, encode_data, encode_metadata
from ._exceptions import ConcurrencyError, JournalClosed, JournalFailed
from ._journal import Journal
from ._types import AppendResult, JournalStatistics, NewEvent, RecordedEvent, Snapshot
from ._validation import (
    check_events,
    check_expected_version,
    check_version_range,
    stream_id_bytes,
)

_READ_CHUNK_EVENTS = 1024


@dataclass(slots=True)
class _Stored:
    stream_id: str
    version: int
    type: str
    data: bytes
    metadata: bytes
    recorded_at_ns: int


@dataclass(slots=True)
class _Batch:
    entries: list[_Stored] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class MemoryJournal(Journal):
    """A journal in memory: for tests, examples and caches.

    It keeps the whole contract, including group commit: appends made while a batch is being
    committed wait for the next batch, reads see only committed events, and after ``fail()``
    every pending and later append raises ``JournalFailed``. Data is stored encoded, so values
    read back are what FileJournal would give (tuples come back as lists, and so on).
    """

    def __init__(self) -> None:
        self._log: list[_Stored] = []
        self._positions: dict[str, list[int]] = {}
        self._tentative_versions: dict[str, int] = {}
        self._snapshots: dict[str, list[Snapshot]] = {}
        self._open_batch: _Batch | None = None
        self._entered = False
        self._closed = False
        self._failure: BaseException | None = None
        self._appends = 0
        self._batches = 0

    async def __aenter__(self) -> Self:
        if self._closed:
            raise JournalClosed("this MemoryJournal was closed; create a new one")
        self._entered = True
        return self

    async def aclose(self) -> None:
        # Let an open batch commit before closing: closing flushes what is in flight.
        while self._open_batch is not None and not self._closed:
            await self._open_batch.done.wait()
        self._closed = True

    def fail(self, cause: BaseException) -> None:
        """Fail the journal as a failed fsync would: pending and later appends raise."""
        if self._failure is None:
            self._failure = cause

    def _check_writable(self) -> None:
        if self._closed:
            raise JournalClosed("the journal is closed; no more appends are accepted")
        if self._failure is not None:
            raise JournalFailed(
                f"the journal failed earlier ({self._failure!r}) and accepts no appends; "
                f"reopen it to recover the durable prefix"
            ) from self._failure

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> AppendResult:
        self._check_writable()
        stream_id_bytes(stream_id)
        check_events(events)
        check_expected_version(expected_version)
        now = time.time_ns()
        encoded = [
            (
                event.type,
                encode_data(event.data, f"data of event {index} ({event.type!r})"),
                encode_metadata(event.metadata, f"metadata of event {index} ({event.type!r})"),
            )
            for index, event in enumerate(events)
        ]
        version = self._tentative_versions.get(stream_id, 0)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        # Invariant: from here to the first await, nothing can fail, so the tentative version
        # and the batch move together (order is fixed at call time).
        batch = self._open_batch
        leader = batch is None
        if batch is None:
            batch = self._open_batch = _Batch()
        for event_type, data, metadata in encoded:
            version += 1
            batch.entries.append(_Stored(stream_id, version, event_type, data, metadata, now))
        self._tentative_versions[stream_id] = version
        self._appends += 1
        entry = batch.entries[-1]
        if leader:
            await self._commit(batch)
        else:
            await batch.done.wait()
        if batch.error is not None:
            raise JournalFailed(
                f"the journal failed before this append was committed ({batch.error!r}); "
                f"it was not acknowledged"
            ) from batch.error
        return AppendResult(version=version, position=self._position_of(entry))

    async def _commit(self, batch: _Batch) -> None:
        # The leader lets every ready task join the batch, then commits it. Shielded: a
        # cancelled leader must not strand the other appenders of its batch.
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()
        self._open_batch = None
        if self._failure is not None:
            batch.error = self._failure
        else:
            for stored in batch.entries:
                self._log.append(stored)
                self._positions.setdefault(stored.stream_id, []).append(len(self._log))
            self._batches += 1
        batch.done.set()

    def _position_of(self, stored: _Stored) -> int:
        return self._positions[stored.stream_id][stored.version - 1]

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._check_writable()
        stream_id_bytes(stream_id)
        current = len(self._positions.get(stream_id, ()))
        if not 1 <= version <= current:
            raise ValueError(
                f"a snapshot of stream {stream_id!r} must be at a durable version "
                f"(1 to {current}), not {version}"
            )
        encoded_data = encode_data(data, "snapshot data")
        encoded_metadata = encode_metadata(metadata or {}, "snapshot metadata")
        snapshot = Snapshot(
            stream_id,
            version,
            decode_data(encoded_data),
            decode_metadata(encoded_metadata),
            time.time_ns(),
        )
        snapshots = self._snapshots.setdefault(stream_id, [])
        index = bisect.bisect_right([s.version for s in snapshots], version)
        snapshots.insert(index, snapshot)
        await anyio.lowlevel.checkpoint()

    async def load_snapshot(
        self, stream_id: str, max_version: int | None = None
    ) -> Snapshot | None:
        stream_id_bytes(stream_id)
        await anyio.lowlevel.checkpoint()
        for snapshot in reversed(self._snapshots.get(stream_id, ())):
            if max_version is None or snapshot.version <= max_version:
                return snapshot
        return None

    def _recorded(self, position: int) -> RecordedEvent:
        stored = self._log[position - 1]
        return RecordedEvent(
            stored.stream_id,
            stored.version,
            position,
            stored.type,
            decode_data(stored.data),
            decode_metadata(stored.metadata),
            stored.recorded_at_ns,
        )

    async def read(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        stream_id_bytes(stream_id)
        check_version_range(from_version, to_version)
        positions = self._positions.get(stream_id, [])
        stop = len(positions) if to_version is None else min(to_version, len(positions))
        for start in range(from_version - 1, stop, _READ_CHUNK_EVENTS):
            chunk = [
                self._recorded(p) for p in positions[start : min(start + _READ_CHUNK_EVENTS, stop)]
            ]
            for event in chunk:
                yield event
            await anyio.lowlevel.checkpoint()

    async def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        if from_position < 1:
            raise ValueError(f"from_position starts at 1, not {from_position}")
        position = from_position
        while True:
            # Re-read the head each chunk so a long read also sees events committed meanwhile.
            head = len(self._log) if to_position is None else min(to_position, len(self._log))
            if position > head:
                return
            end = min(position + _READ_CHUNK_EVENTS, head + 1)
            chunk = [self._recorded(p) for p in range(position, end)]
            for event in chunk:
                yield event
            position = end
            await anyio.lowlevel.checkpoint()

    async def stream_version(self, stream_id: str) -> int:
        stream_id_bytes(stream_id)
        return len(self._positions.get(stream_id, ()))

    async def head_position(self) -> int:
        return len(self._log)

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            streams=len(self._positions),
            events=len(self._log),
            head_position=len(self._log),
            appends=self._appends,
            appended_events=len(self._log),
            batches=self._batches,
            fsyncs=0,
            bytes_written=0,
            index_bytes=0,
        )
