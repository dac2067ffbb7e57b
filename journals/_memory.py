"""MemoryJournal: the journal contract held in memory, with the same semantics as FileJournal."""

from __future__ import annotations

import bisect
import logging
import operator
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from ._encoding import (
    check_snapshot_size,
    decode_data,
    decode_metadata,
    encode_data,
    encode_event,
    encode_metadata,
)
from ._exceptions import (
    CLOSED_DURING_READ,
    NOT_OPEN,
    NOT_WRITABLE,
    ConcurrencyError,
    JournalClosed,
    JournalFailed,
)
from ._journal import Journal, StartedAppend
from ._opening_task import check_closing_task, opening_task
from ._types import AppendResult, JournalStatistics, NewEvent, RecordedEvent, Snapshot
from ._validation import (
    APPEND_BYTES_MAX,
    append_too_large,
    check_events,
    check_expected_version,
    check_max_version,
    check_position_range,
    check_version_range,
    event_record_bytes,
    events_of_columns,
    metadata_holds,
    plain_str,
    snapshot_version,
    stream_id_bytes,
    wanted_metadata,
)
from ._wake import BatchDone, done_factory

_READ_CHUNK_EVENTS = 1024

logger = logging.getLogger("journals.memory")


@dataclass(slots=True)
class _Stored:
    stream_id: str
    version: int
    type: str
    data: bytes
    metadata: bytes
    recorded_at_ns: int


@dataclass(slots=True)
class _StoredSnapshot:
    stream_id: str
    version: int
    data: bytes
    metadata: bytes
    recorded_at_ns: int


def _kept(encoded: bytes) -> bytes:
    """``encoded`` (orjson's output) copied into a bytes object of its own length, to keep.

    orjson hands out its output buffer as the bytes object without shrinking it: about 4 KiB
    for a small event (orjson 3.12 and later), which the log would keep for every event: a
    one-field event cost ~4.3 KB where ~240 bytes do. The copy costs about 0.1 us.
    """
    return _join((encoded, b"")) if encoded else encoded


_join = b"".join
_version_of = operator.attrgetter("version")


def _loaded(snapshot: _StoredSnapshot, metadata: Mapping[str, Any]) -> Snapshot:
    """A stored snapshot as a load answers it (its data decoded again for each load)."""
    return Snapshot(
        snapshot.stream_id,
        snapshot.version,
        decode_data(snapshot.data),
        metadata,
        snapshot.recorded_at_ns,
    )


class _Batch:
    """Appends that commit together, and the outcome (``AppendOutcome``) of each of them.

    Waits on it are woken in the order they were made (on asyncio; trio picks the order of
    tasks woken together itself), so a wait made after an append was placed is woken after
    that append's own and before those of appends placed later.
    """

    __slots__ = ("appends", "done", "entries", "error")

    def __init__(self, done: BatchDone) -> None:
        self.entries: list[_Stored] = []
        self.appends = 0
        self.done = done
        self.error: tuple[type[Exception], str, BaseException | None] | None = None

    def raise_error(self) -> None:
        if self.error is not None:
            kind, message, cause = self.error
            raise kind(message) from cause

    def wait(self) -> Awaitable[None]:
        return self.done.wait()


class MemoryJournal(Journal):
    """A journal in memory: for tests, examples and caches.

    It keeps the whole contract, including group commit: an append joins the open batch, which
    a committer task commits once the tasks ready to run have had their turn (appends placed
    after that wait for the next batch); reads see only committed events; and after ``fail()``
    (or an unexpected error while it commits, as on FileJournal) every pending and later
    append raises ``JournalFailed``. ``start_append`` places an append
    at once, as FileJournal's does, so the actor runtime holds answers behind it in the same
    order. Data is stored encoded, so values read back are what FileJournal would give (tuples
    come back as lists, and so on). Use it as an async context manager (``async with``): the
    committer runs while it is open, and, as on FileJournal, reads and appends raise
    ``JournalClosed`` before it is opened and once it is closed (``statistics()`` answers
    always).

    It keeps every event and every snapshot in memory for as long as it lives, as a journal
    keeps its history: about 240 bytes per event beyond its encoded data and metadata, and
    each snapshot's encoded data and metadata (no compaction drops old ones). A process that
    runs for long with a growing history wants ``FileJournal``.

    What differs from ``FileJournal`` beyond durability (backpressure, chunk sizes, timing,
    snapshot compaction) is listed in docs/runtime.md, "MemoryJournal in tests, FileJournal
    in production".
    """

    def __init__(self) -> None:
        self._log: list[_Stored] = []
        self._positions: dict[str, list[int]] = {}
        self._tentative_versions: dict[str, int] = {}
        self._placed_events = 0
        self._snapshots: dict[str, list[_StoredSnapshot]] = {}
        self._open_batch: _Batch | None = None
        self._make_done: Callable[[], BatchDone] | None = None
        self._wakeup = anyio.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._opened_in: anyio.TaskInfo | None = None  # The task that may close it.
        self._closed = False  # No more appends: closed, or its committer stopped.
        self._open = False  # Entered and not closed: reads are answered.
        self._failure: BaseException | None = None
        self._appends = 0
        self._batches = 0

    async def __aenter__(self) -> Self:
        if self._closed:
            raise JournalClosed("this MemoryJournal was closed; create a new one")
        if self._task_group is not None or self._opened_in is not None:
            raise JournalClosed(
                "this MemoryJournal is open already; enter it once and share it, or create another"
            )
        # Recorded now, as FileJournal does: a close from another task while the committer
        # starts is refused, and the opening goes on for this task to close the journal.
        self._opened_in = opening_task()
        self._make_done = done_factory()
        self._wakeup = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._commit_batches)
        except BaseException as error:
            self._closed = True
            self._opened_in = None  # Not opened: nothing for any task to close.
            await task_group.__aexit__(type(error), error, error.__traceback__)
            raise
        self._task_group = task_group
        self._open = True
        return self

    async def aclose(self) -> None:
        # Before anything changes: refused, the journal stays open for its task to close.
        check_closing_task(self._opened_in, "MemoryJournal", opening=self._task_group is None)
        # Appends are refused from here on; the committer commits what was placed, then
        # returns. The task group is left here, in the task that entered it.
        self._opened_in = None
        self._closed = True
        self._open = False
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        self._wakeup.set()
        await task_group.__aexit__(None, None, None)

    def fail(self, cause: BaseException) -> None:
        """Fail the journal as a failed fsync would: pending and later appends raise."""
        if self._failure is None:
            self._failure = cause
        batch, self._open_batch = self._open_batch, None
        if batch is not None:
            batch.error = (
                JournalFailed,
                f"the journal failed before this append was committed ({self._failure!r}); "
                f"it was not acknowledged. Reopen the journal to recover the durable prefix",
                self._failure,
            )
            batch.done.set()

    def _check_readable(self) -> None:
        if not self._open:
            raise JournalClosed(NOT_OPEN)

    def _check_writable(self) -> Callable[[], BatchDone]:
        make_done = self._make_done
        if self._closed:
            raise JournalClosed(NOT_WRITABLE)
        if self._failure is not None:
            raise JournalFailed(
                f"the journal failed earlier ({self._failure!r}) and accepts no appends; "
                f"reopen it to recover the durable prefix"
            ) from self._failure
        if make_done is None:
            raise JournalClosed(NOT_WRITABLE)
        return make_done

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> AppendResult:
        durable, outcome, version, position = self.start_append(
            stream_id, events, expected_version=expected_version
        )
        await durable
        outcome.raise_error()
        return AppendResult(version=version, position=position)

    def start_append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> StartedAppend:
        make_done = self._check_writable()
        stream_bytes = stream_id_bytes(stream_id)
        check_events(events)
        now = time.time_ns()
        # The checks FileJournal makes (a record's size limit too), with the same messages,
        # in its order: the events are encoded before expected_version is checked.
        encoded = [
            (plain_str(event.type), *encode_event(index, event))
            for index, event in enumerate(events)
        ]
        check_expected_version(expected_version)
        version = self._tentative_versions.get(stream_id, 0)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        # The size FileJournal's records of the append would take, refused as it refuses it.
        size = sum(
            event_record_bytes(stream_bytes, event_type.encode("utf-8"), metadata, data)
            for event_type, data, metadata in encoded
        )
        if size > APPEND_BYTES_MAX:
            raise append_too_large(size, len(encoded), APPEND_BYTES_MAX)
        # Invariant: from here on nothing can fail, so the tentative version, the position and
        # the batch move together (order is fixed at call time). Batches commit in the order
        # they were opened and nothing placed is taken back (after a failure nothing more
        # commits), so the position an append is placed at is the one it commits at.
        batch = self._open_batch
        if batch is None:
            batch = self._open_batch = _Batch(make_done())
            self._wakeup.set()
        entries = batch.entries
        plain_id = plain_str(stream_id)
        for event_type, data, metadata in encoded:
            version += 1
            entries.append(
                _Stored(plain_id, version, event_type, _kept(data), _kept(metadata), now)
            )
        self._tentative_versions[plain_id] = version
        self._placed_events += len(encoded)
        batch.appends += 1
        return batch.done.wait(), batch, version, self._placed_events

    def start_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> StartedAppend:
        # FileJournal's order: a closed or failed journal, then the stream id, is named
        # before columns of different lengths.
        self._check_writable()
        stream_id_bytes(stream_id)
        events = events_of_columns(types, data)
        return self.start_append(stream_id, events, expected_version=expected_version)

    async def _commit_batches(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The committer: commit each batch once the tasks ready to run have joined it."""
        task_status.started()
        try:
            while True:
                if self._open_batch is None:
                    if self._closed:
                        return
                    self._wakeup = anyio.Event()
                    await self._wakeup.wait()
                    continue
                # The tasks ready now run first, and their appends join the open batch.
                await anyio.lowlevel.checkpoint()
                batch, self._open_batch = self._open_batch, None
                if batch is not None:  # None if fail() failed it meanwhile.
                    before = len(self._log)
                    try:
                        self._commit(batch)
                    except Exception as error:
                        self._commit_failed(batch, before, error)
        finally:
            self._closed = True
            stranded, self._open_batch = self._open_batch, None
            if stranded is not None:
                stranded.error = (
                    JournalClosed,
                    "the journal was closed (the task that opened it was cancelled) before "
                    "this append was committed; it was not acknowledged. Keep the journal open "
                    "in a task that outlives every task that appends to it",
                    None,
                )
                stranded.done.set()

    def _commit(self, batch: _Batch) -> None:
        log = self._log
        positions = self._positions
        for stored in batch.entries:
            log.append(stored)
            positions.setdefault(stored.stream_id, []).append(len(log))
        # Pair to the positions answered at placement: the open batch was the last one placed
        # to, so once it is committed every placed event is in the log.
        assert len(log) == self._placed_events, (len(log), self._placed_events)
        batch.done.set()
        # Counted last: a batch whose commit failed (``_commit_failed``) is not counted.
        self._batches += 1
        self._appends += batch.appends  # Committed appends, as FileJournal counts them.

    def _commit_failed(self, batch: _Batch, before: int, error: Exception) -> None:
        """Fail the journal on an error while committing ``batch`` (a bug, ``MemoryError``),
        as FileJournal's committer does: fail-stop, not a torn-down opener or a hung append.

        What the batch added to the log (``before`` events long) is taken out again, so reads
        show exactly what was acknowledged; its appends and every later one raise
        ``JournalFailed``.
        """
        logger.error(
            "the journal's committer stopped on an unexpected error; the journal is failed "
            "(fail-stop)",
            exc_info=error,
        )
        del self._log[before:]
        for stream_id in {stored.stream_id for stored in batch.entries}:
            positions = self._positions.get(stream_id)
            if positions is None:
                continue
            del positions[bisect.bisect_right(positions, before) :]
            if not positions:
                del self._positions[stream_id]
        batch.error = (
            JournalFailed,
            f"the journal's committer stopped on an unexpected error ({error!r}; the traceback "
            f"is logged by 'journals.memory'), so this append was not acknowledged and the "
            f"journal accepts no more appends. It is a bug or an exhausted resource: report "
            f"the traceback if it is a bug.",
            error,
        )
        batch.done.set()
        self.fail(error)  # The appends placed after it, and every later one.

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._check_writable()
        stream_bytes = stream_id_bytes(stream_id)
        version = snapshot_version(stream_id, version, len(self._positions.get(stream_id, ())))
        encoded_data = encode_data(data, "snapshot data")
        encoded_metadata = encode_metadata(metadata, "snapshot metadata")
        check_snapshot_size(stream_id, stream_bytes, encoded_metadata, encoded_data)
        # Cancelled before it began, it stores nothing, as FileJournal's save before its
        # thread begins to write; the journal may have closed or failed meanwhile.
        await anyio.lowlevel.checkpoint()
        self._check_writable()
        # Kept encoded and decoded on each load, as FileJournal reads it from its file: a
        # loader that changes what it got (a state folded in place) changes no later load.
        snapshot = _StoredSnapshot(
            plain_str(stream_id),
            version,
            _kept(encoded_data),
            _kept(encoded_metadata),
            time.time_ns(),
        )
        snapshots = self._snapshots.setdefault(stream_id, [])
        # By key, not over a list of the versions: a save costs log(n), not n, as they pile up.
        index = bisect.bisect_right(snapshots, version, key=_version_of)
        snapshots.insert(index, snapshot)

    async def load_snapshot(
        self, stream_id: str, max_version: int | None = None
    ) -> Snapshot | None:
        stream_id_bytes(stream_id)
        check_max_version(max_version)
        self._check_readable()
        await anyio.lowlevel.checkpoint()
        for snapshot in reversed(self._snapshots.get(stream_id, ())):
            if max_version is None or snapshot.version <= max_version:
                return _loaded(snapshot, decode_metadata(snapshot.metadata))
        return None

    async def load_snapshot_matching(
        self, stream_id: str, metadata: Mapping[str, Any], max_version: int | None = None
    ) -> Snapshot | None:
        stream_id_bytes(stream_id)
        check_max_version(max_version)
        wanted = wanted_metadata(metadata)
        self._check_readable()
        await anyio.lowlevel.checkpoint()
        looked_at = None  # The version of the last snapshot looked at.
        for snapshot in reversed(self._snapshots.get(stream_id, ())):
            version = snapshot.version
            if (max_version is not None and version > max_version) or version == looked_at:
                continue  # Above the bound, or saved before the one a load answers there.
            looked_at = version
            stored = decode_metadata(snapshot.metadata)
            if metadata_holds(stored, wanted):
                return _loaded(snapshot, stored)
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
    ) -> AsyncGenerator[RecordedEvent, None]:
        stream_id_bytes(stream_id)
        check_version_range(from_version, to_version)
        self._check_readable()
        positions = self._positions.get(stream_id, [])
        stop = len(positions) if to_version is None else min(to_version, len(positions))
        for start in range(from_version - 1, stop, _READ_CHUNK_EVENTS):
            self._check_read_goes_on()
            chunk = [
                self._recorded(p) for p in positions[start : min(start + _READ_CHUNK_EVENTS, stop)]
            ]
            for event in chunk:
                yield event
            await anyio.lowlevel.checkpoint()

    async def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        check_position_range(from_position, to_position)
        self._check_readable()
        position = from_position
        while True:
            # Re-read the head each chunk so a long read also sees events committed meanwhile.
            head = len(self._log) if to_position is None else min(to_position, len(self._log))
            if position > head:
                return
            self._check_read_goes_on()
            end = min(position + _READ_CHUNK_EVENTS, head + 1)
            chunk = [self._recorded(p) for p in range(position, end)]
            for event in chunk:
                yield event
            position = end
            await anyio.lowlevel.checkpoint()

    async def stream_version(self, stream_id: str) -> int:
        stream_id_bytes(stream_id)
        self._check_readable()
        return len(self._positions.get(stream_id, ()))

    async def head_position(self) -> int:
        self._check_readable()
        return len(self._log)

    def _check_read_goes_on(self) -> None:
        if not self._open:
            raise JournalClosed(CLOSED_DURING_READ)

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
            batch_fsyncs=0,
        )
