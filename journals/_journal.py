"""The journal contract every backend implements (memory, file, and any later one)."""

from __future__ import annotations

import abc
from array import array
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from ._types import (
    AppendResult,
    JournalStatistics,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamChunk,
)
from ._validation import events_of_columns, metadata_holds, wanted_metadata


class AppendOutcome(Protocol):
    """How a started append tells, once its durability wait is over, whether it failed."""

    def raise_error(self) -> None:
        """Raise the append's error if it was not made durable; return if it was."""

    def wait(self) -> Awaitable[Any]:
        """A further wait for the append's outcome (durable or failed), for another task.

        Waits on one outcome are woken in the order they were made, the append's own
        ``durable`` first; cancelling one cancels only that wait. The actor runtime holds
        an answer that must follow the append this way, so that it comes back in order.
        """


StartedAppend = tuple[Awaitable[Any], AppendOutcome, int, int]
"""What ``Journal.start_append`` answers: ``(durable, outcome, version, position)``."""


class QueuedAppend(Protocol):
    """An append waiting for room in the journal (``Journal.queue_append_columns``).

    Appends waiting for room are placed in the order they were queued, as room frees up.
    """

    def wait(self) -> Awaitable[Any]:
        """Done once the append is placed, or refused (``started`` then raises why)."""

    def started(self) -> StartedAppend:
        """Once ``wait`` is done: the placed append, as ``Journal.start_append`` answers it.

        Raises what placing it raised instead (``ConcurrencyError``, a closed or failed
        journal), with nothing of it written.
        """

    def withdraw(self) -> bool:
        """Take the append back unless it is placed: whether it will never be written.

        True: it was still waiting (it leaves the queue and nothing of it is written), or it
        was refused. False: it is placed, and its outcome comes as that of ``started``.
        """


CHUNK_EVENTS_MAX = 2048
"""The most events one ``StreamChunk`` of the default ``read_chunks`` holds."""


class Journal(abc.ABC):
    """An append-only log of events, split into streams, with a global order.

    Use it as an async context manager: entering opens (and for durable backends, recovers)
    the journal; leaving flushes what is in flight and closes it::

        async with FileJournal("data/journal") as journal:
            result = await journal.append("account-42", [NewEvent("Opened", {"owner": "ada"})],
                                          expected_version=0)

    Contract, shared by every backend and pinned by the conformance suite:

    * Stream versions start at 1 and are gapless; global positions start at 1 and are gapless.
    * ``append`` is atomic: all of its events become visible and durable together, or none does.
    * ``append`` returns only once its events are durable (for the backend's meaning of durable).
    * Order is fixed at call time: an append takes its place in the log (and its versions and
      positions) before it first yields to the event loop. Appends to one stream issued one after
      another from one task, without awaiting each, therefore commit in issue order. The actor
      runtime pipelines commands on this guarantee.
    * Reads see only durable events, and only while the journal is open: before it is entered
      and once it is closed, reads raise ``JournalClosed`` (``statistics()`` answers always).
    * What reads hand back is plain, whatever was given: stream ids and event types are
      ``str`` (a ``StrEnum`` member comes back as its str, also when a read asks for it),
      versions and positions ``int`` (an ``IntEnum`` bound too), data in its JSON form.
    * A journal object is entered once: entering it again while it is open, or once it is
      closed (closed before it was ever entered too), raises ``JournalClosed``; create a new
      one to open the journal again.
    * After a write or fsync failure (or any other error while it commits) the journal is
      failed: every pending and later append raises ``JournalFailed``; nothing is
      acknowledged after the failure.
    """

    # -- lifecycle ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def __aenter__(self) -> Self: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Flush what is in flight, stop accepting appends and release files. Idempotent.

        Called in the task that opened the journal: the built-in journals refuse a close from
        another task with ``JournalOpenedInAnotherTask`` and change nothing.
        """

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- writing -----------------------------------------------------------------------------

    @abc.abstractmethod
    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` atomically; return once they are durable.

        ``expected_version`` is the version the caller believes the stream has (0 for a stream
        that does not exist yet); on a mismatch ``ConcurrencyError`` is raised and nothing is
        written. Pass ``None`` to append without the check. Anything else but an int from 0
        (a bool included: ``True`` is no version) is refused with ``ValueError``.

        Raises ``ValueError`` for an invalid stream id or event list (a list or another
        sequence of 1 to 10,000 ``NewEvent``; a generator is refused before it is consumed),
        ``EventEncodingError`` when an event's data or metadata cannot be encoded, its
        metadata is not a mapping, it is larger than a record holds, or the append's records
        would take more than 1 GiB together (nothing of this append is written; other appends
        are not affected), ``JournalClosed`` and ``JournalFailed``.
        """

    def start_append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> StartedAppend | None:
        """Take the append's place in the log now, without waiting; ``None`` if it cannot.

        The same append as ``append``, for callers that keep many appends in flight and want
        no coroutine per append. It answers ``(durable, outcome, version, position)``: await
        ``durable`` (it is done once the append is durable or failed), then call
        ``outcome.raise_error()``, which raises what ``append`` would have raised. ``version``
        and ``position`` are what ``append`` would have answered. An append placed here is in
        the log exactly as if ``append`` had placed it, and cancelling the wait does not take it
        back. It raises what ``append`` raises before it waits (invalid input,
        ``ConcurrencyError``, a closed or failed journal), with nothing written.

        ``None`` means the append was not placed, nor its input checked: the backend has no
        such path, or the append would have to wait for room. Call ``append`` then (which
        checks it). This default always answers ``None``.
        """
        return None

    def start_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> StartedAppend | None:
        """``start_append`` for events given as columns: type names and data, no metadata.

        The append of ``[NewEvent(t, d) for t, d in zip(types, data)]``, with the same checks,
        errors and answer as ``start_append`` of that list; the columns must be as long as each
        other (``ValueError``). The actor runtime appends this way: a backend that takes the
        columns as they are skips building an object per event, as ``read_chunks`` does when
        reading. This default builds the ``NewEvent`` list for a backend with a
        ``start_append`` of its own, and answers ``None`` (call ``append``) for one without.
        """
        if type(self).start_append is Journal.start_append:
            return None
        events = events_of_columns(types, data)
        return self.start_append(stream_id, events, expected_version=expected_version)

    def queue_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> QueuedAppend | None:
        """Queue the append that ``start_append_columns`` could not place for want of room.

        Checks and encodes it now (raising what ``append`` raises before it waits) and queues
        it behind the appends already waiting; an append whose records would take more than
        1 GiB is refused when its turn comes (``started`` raises ``EventEncodingError``).
        Unlike a call of ``append``, which takes its append back when it is cancelled while
        waiting, this leaves the caller to choose: ``QueuedAppend.withdraw`` says for certain
        whether the append will be written. The actor runtime uses it so that a cancelled
        command whose events were never placed leaves nothing behind. ``None``: the backend
        has no such path (call ``append``). This default always answers ``None``.
        """
        return None

    @abc.abstractmethod
    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a snapshot of ``stream_id``'s state at ``version`` (1 <= version <= current).

        ``version`` is a whole number (an int, not a bool or a float); anything else, or a
        version the stream does not hold yet, raises ``ValueError`` before anything is written.
        Data or metadata that cannot be stored raises ``EventEncodingError``, also before
        anything is written: what JSON cannot hold exactly, or a snapshot whose encoded data
        and metadata do not fit in one 64 MiB record with its header and stream id.

        Cancelling the call stops the wait, not a write already started: the snapshot may
        still be stored, and if that write fails, the journal fails (``JournalFailed``) as if
        the call had waited for it. A call cancelled before its write began stores nothing.
        """

    # -- reading -----------------------------------------------------------------------------

    @abc.abstractmethod
    def read(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Yield the stream's events from ``from_version`` to ``to_version`` (inclusive), in order.

        Events are read in bounded chunks; a long stream is never loaded whole. A stream that
        does not exist yields nothing. The versions are whole numbers (ints, not bools or
        floats), ``from_version`` from 1; anything else raises ``ValueError``, as it does for
        ``read_chunks``, ``read_chunk``, ``read_all``'s positions and ``load_snapshot``'s
        ``max_version``.
        """

    async def read_chunks(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Yield the same events as ``read``, as ``StreamChunk`` columns of bounded size.

        The fast way to fold a long stream (the actor runtime replays with it). A stream that
        does not exist, or a range past its end, yields nothing; no chunk is empty. Backends
        read their chunks directly; this default groups what ``read`` yields.
        """
        events = self.read(stream_id, from_version, to_version)
        chunk: list[RecordedEvent] = []
        try:
            async for event in events:
                chunk.append(event)
                if len(chunk) == CHUNK_EVENTS_MAX:
                    yield _chunk_of(chunk)
                    chunk = []
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        if chunk:
            yield _chunk_of(chunk)

    async def read_chunk(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> StreamChunk | None:
        """The first chunk ``read_chunks`` yields for the same arguments; None if it yields none.

        One await and no generator to set up and close: the runtime brings an entity back
        with it, chunk after chunk, from ``chunk.last_version + 1`` on, and most entities'
        histories are one chunk. Backends read the chunk directly; this default takes the
        first of ``read_chunks``.
        """
        chunks = self.read_chunks(stream_id, from_version, to_version)
        try:
            async for chunk in chunks:
                return chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return None

    @abc.abstractmethod
    def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Yield every durable event from ``from_position`` on, in global order."""

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The stream's durable version, 0 if it has no events. Answers without replaying."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The global position of the last durable event, 0 if the journal is empty."""

    @abc.abstractmethod
    async def load_snapshot(
        self, stream_id: str, max_version: int | None = None
    ) -> Snapshot | None:
        """The latest snapshot of the stream at or below ``max_version`` (any version if None).

        Of the snapshots the journal keeps: a compaction of a FileJournal's snapshot file
        keeps the newest of each stream, the oldest and a few between them, so the one found
        at or below ``max_version`` may be older than one saved there before (see
        docs/journal-format.md, "Compaction").
        """

    async def load_snapshot_matching(
        self, stream_id: str, metadata: Mapping[str, Any], max_version: int | None = None
    ) -> Snapshot | None:
        """The latest snapshot of the stream at or below ``max_version`` whose metadata holds
        every item of ``metadata`` (each key, with an equal value); None if none does.

        Looks back from the snapshot ``load_snapshot`` answers for the same ``max_version``,
        one version after another, at what ``load_snapshot`` answers for each version (the
        last saved there), and only among the snapshots the journal keeps. The actor runtime
        uses it when the newest snapshot is of another ``snapshot_schema`` (after a rollback
        of a deploy that bumped it): an older one of the schema it reads spares a replay from
        the stream's start. ``metadata`` is compared in the JSON form a save stores (a tuple
        as a list, a UUID or a datetime as its string), so the metadata a snapshot was saved
        with finds it. ``metadata`` that is not a mapping raises ``TypeError``, one that no
        snapshot can hold (not JSON, or a NaN) ``ValueError``; the stream id and
        ``max_version`` are checked as ``load_snapshot`` checks them.

        This default calls ``load_snapshot`` once per snapshot it passes, so a backend gets
        it right as soon as its ``load_snapshot`` is. A backend that overrides it (to read
        each snapshot's data only once its metadata matches, as ``MemoryJournal`` and
        ``FileJournal`` do) must answer what this default answers, compare in that JSON
        form, refuse the same arguments with the same errors, and raise as its
        ``load_snapshot`` raises on a closed or failed journal; the snapshot conformance
        suite checks all of it.
        """
        wanted = wanted_metadata(metadata)
        while True:
            snapshot = await self.load_snapshot(stream_id, max_version)
            if snapshot is None or metadata_holds(snapshot.metadata, wanted):
                return snapshot
            max_version = snapshot.version - 1

    @abc.abstractmethod
    def statistics(self) -> JournalStatistics:
        """A frozen record of the journal's counters and sizes."""


def _chunk_of(events: list[RecordedEvent]) -> StreamChunk:
    return StreamChunk(
        events[0].stream_id,  # As read: a plain str, also when a str subclass was asked for.
        events[0].version,
        array("Q", [event.position for event in events]),
        [event.type for event in events],
        [event.data for event in events],
        [event.metadata for event in events],
        [event.recorded_at_ns for event in events],
    )
