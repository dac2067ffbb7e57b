"""The actor of one entity (a small object, no task) and rebuilding state from the journal."""

from __future__ import annotations

import asyncio
import logging
import operator
import sys
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from journals import Journal, StreamChunk

from ._aggregate import Aggregate
from ._exceptions import SnapshotShapeMismatch, UnknownEventType
from ._initial import check_initial
from ._repeats import IN_THE_NEXT_MINUTE, Repeats, since_last

logger = logging.getLogger("eventfold.runtime")

SNAPSHOT_AGGREGATE_KEY = "aggregate"
SNAPSHOT_SCHEMA_KEY = "schema"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

MAILBOX_COMPACT_MIN = 1024
"""A mailbox's expired entries are dropped once it holds this many (and twice its last size)."""


class Parking:
    """How callers waiting for room are parked and woken, on the running event loop.

    Overload parks and wakes thousands of callers a second, so this is on a hot path. On
    asyncio a caller waits on one future, awaited directly (``anyio.Event`` wraps an
    ``asyncio.Event``, which makes a future and two coroutine objects per wait); on trio its
    task is parked with ``trio.lowlevel`` (``anyio.Event`` makes a ``trio.Event`` and its
    parking lot per wait). ``now`` is the event loop's clock, read without looking up the
    backend each time. Waking a parked caller twice, or after it was cancelled, does nothing.
    """

    __slots__ = ("awaitable", "create", "event", "now", "wake", "woken")

    def __init__(self) -> None:
        self.awaitable = False
        # Outside an event loop (a Runtime built before it is entered): anyio's portable
        # event and clock, replaced by the loop's own once the runtime starts.
        self.create: Callable[[], Any] = anyio.Event
        self.wake: Callable[[Any], None] = operator.methodcaller("set")
        self.woken: Callable[[Any], bool] = operator.methodcaller("is_set")
        self.now: Callable[[], float] = anyio.current_time
        # Events that several tasks may wait on (an activation, an answer held back): the
        # loop's own, since ``anyio.Event()`` looks up the running backend on each creation.
        self.event: Callable[[], Any] = anyio.Event
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self.awaitable = True
            self.create = loop.create_future
            self.wake = _resolve
            self.woken = asyncio.Future.done
            self.now = loop.time
            self.event = asyncio.Event
        elif (lowlevel := _running_trio()) is not None:
            _TrioParked.lowlevel = lowlevel
            self.create = _TrioParked
            self.wake = _TrioParked.set
            self.woken = operator.attrgetter("woken")
            self.event = sys.modules["trio"].Event


def _running_trio() -> Any:
    """``trio.lowlevel`` when this thread runs trio, else None (trio is an optional extra)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return trio.lowlevel


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled caller's future is done already
        future.set_result(None)


class _TrioParked:
    """A caller parked on trio: its task is rescheduled once, by ``set`` or by cancellation."""

    __slots__ = ("task", "woken")
    lowlevel: Any = None  # trio.lowlevel, imported once a runtime starts on trio

    def __init__(self) -> None:
        self.task: Any = None
        self.woken = False

    def set(self) -> None:
        if not self.woken:
            self.woken = True
            if self.task is not None:
                self.lowlevel.reschedule(self.task)

    async def wait(self) -> None:
        if self.woken:
            return
        lowlevel = self.lowlevel
        self.task = lowlevel.current_task()
        await lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, raise_cancel: Any) -> Any:
        self.woken = True  # cancelled while parked: later wake-ups must not reschedule it
        return self.lowlevel.Abort.SUCCEEDED


class Waiting:
    """The parts of an actor that exist only while callers wait on it (created lazily).

    ``mailbox``: callers waiting for room as ``[parked, handed, expired, queued]``
    (``parked`` comes from ``Parking``), first come first served; a freed slot is handed to
    the first of them (``handed`` becomes True); a caller whose deadline passes is woken with
    ``expired`` True, a cancelled caller sets it itself, and such entries are skipped later.
    ``queued``: a command of ``tell_nowait``'s outbox being delivered, which the outbox
    counts (``statistics()`` does not count it as a caller waiting for room).
    ``drains``: answers (rejections, commands without events, state reads) waiting until the
    events decided before them are durable, as ``[version, event, error]``. ``settled``: set
    when a broken actor has no command in flight any more.

    Invariant: a non-empty mailbox means every slot is taken (a slot is only given back
    when no live caller waits), so a release always comes to clear expired entries. A
    release only clears those ahead of the first live caller, though, and while every slot
    stays taken (a disk that stalls holds them all) callers that time out and try again
    would add an entry each, for as long as it lasts: ``park`` drops the expired entries
    once they are the majority, so the mailbox holds at most about twice the live callers.
    """

    __slots__ = ("compact_at", "drains", "mailbox", "settled")

    def __init__(self) -> None:
        self.mailbox: deque[list[Any]] = deque()
        self.drains: list[list[Any]] = []
        self.settled: anyio.Event | None = None
        self.compact_at = MAILBOX_COMPACT_MIN

    def park(self, entry: list[Any]) -> None:
        """Queue a caller's ``[parked, handed, expired, queued]`` entry behind the others.

        At amortised constant cost per caller (as ``WaiterDeadlines.watch`` keeps its heap):
        once the mailbox reaches twice its size after the last pass, the expired entries
        leave it, and the live callers keep their order.
        """
        mailbox = self.mailbox
        if len(mailbox) >= self.compact_at:
            live = [waiter for waiter in mailbox if not waiter[2]]
            mailbox.clear()
            mailbox.extend(live)
            self.compact_at = max(MAILBOX_COMPACT_MIN, 2 * len(live))
        mailbox.append(entry)


UNWATCHED: Any = object()
"""``Actor.ready`` of an actor being activated that no caller waits on yet: the first one to
wait makes the event (most activations have no such caller, so none is made for them)."""


class Actor:
    """One live entity: its state in memory and the bookkeeping of its commands in flight.

    Invariants: ``durable <= version``; ``version - durable`` events are in flight (decided,
    evolved into ``state``, not yet acknowledged by the journal); ``in_flight`` counts the
    mailbox slots taken (accepted, unanswered commands and ``state()`` reads, and appends
    whose callers went away until their outcome is known) and never exceeds the mailbox
    bound. ``ready`` is an event (or ``UNWATCHED``)
    while the actor is activating, or while its latest append waits for room in the journal
    (callers wait on it: nothing is decided meanwhile), and None otherwise. ``broken``
    is set when the state must not be used any more (a crash, a journal failure, or an
    append refused or withdrawn, whose events ``evolve`` may have put in the state); the
    actor then only waits for its commands in flight to settle, and is replaced by a fresh
    activation from what is durable. ``last_outcome`` is the journal's outcome of the append
    that reached ``version`` while it is not known to be durable (None otherwise, or when
    that append went through ``Journal.append``): answers held behind it wait on it.
    """

    __slots__ = (
        "aggregate",
        "broken",
        "durable",
        "in_flight",
        "last_outcome",
        "ready",
        "snapshot_at",
        "state",
        "stream_id",
        "tick",
        "version",
        "waiting",
    )

    def __init__(
        self, stream_id: str, aggregate: Aggregate[Any, Any, Any], tick: int, ready: Any
    ) -> None:
        self.stream_id = stream_id
        self.aggregate = aggregate
        self.state: Any = None
        self.version = 0
        self.durable = 0
        self.in_flight = 0
        self.last_outcome: Any = None
        self.tick = tick
        self.snapshot_at = 0
        self.ready: Any = ready  # An event, UNWATCHED or None (see the class docstring).
        self.broken: BaseException | None = None
        self.waiting: Waiting | None = None

    def waits(self) -> Waiting:
        waiting = self.waiting
        if waiting is None:
            waiting = self.waiting = Waiting()
        return waiting

    def snapshot_not_taken(self, version: int, previous: int) -> None:
        """The snapshot decided at ``version`` was not taken (its command was cancelled, or
        the snapshot could not be queued): unless a later one was decided meanwhile, the
        next command due or passivation takes it."""
        if self.snapshot_at == version:
            self.snapshot_at = previous

    def is_idle(self) -> bool:
        return (
            self.in_flight == 0
            and self.ready is None
            and self.broken is None
            and (self.waiting is None or not self.waiting.mailbox)
        )


def _of_schema(metadata: Any, aggregate: Aggregate[Any, Any, Any]) -> bool:
    """Whether a snapshot's metadata says it is of the aggregate's name and snapshot schema."""
    return (
        metadata is not None
        and metadata.get(SNAPSHOT_AGGREGATE_KEY) == aggregate.name
        and metadata.get(SNAPSHOT_SCHEMA_KEY) == aggregate.snapshot_schema
    )


async def rebuild(
    journal: Journal,
    aggregate: Aggregate[Any, Any, Any],
    stream_id: str,
    *,
    to_version: int | None = None,
    until: datetime | None = None,
    use_snapshots: bool = True,
    reached: list[int] | None = None,
    repeats: Repeats,
) -> tuple[Any, int, int]:
    """Fold the entity's durable history: snapshot (when usable) plus tail.

    Answers ``(state, version, snapshot_version)``; ``snapshot_version`` is 0 when no
    snapshot was used. ``to_version`` stops at that version; ``until`` stops before the first
    event whose ``recorded_at`` is after it (snapshots are not used then: they do not say
    when their events were recorded). ``use_snapshots=False`` skips looking for one. The
    snapshot used is the latest of the aggregate's name and ``snapshot_schema`` at or below
    ``to_version`` that the journal keeps, found behind newer ones of another schema.

    An exception raised while folding (by an upcaster, a decoder or ``evolve``) propagates
    with a note naming the stream and the stored event; the version of the state reached
    before that event is then appended to ``reached``, when given. A snapshot that
    ``decode_state`` cannot decode is logged (in full once a minute per aggregate and class
    of exception, by ``repeats``) and the entity replayed in full.
    """
    state = initial = aggregate.initial
    if aggregate._initial_copy is not None:
        check_initial(aggregate.name, initial, aggregate._initial_copy)
    version = 0
    snapshot_version = 0
    # A new entity is the common case of activation: answer it from the journal's index,
    # without a snapshot lookup or a read (each may cost a worker-thread round trip).
    durable = await journal.stream_version(stream_id)
    if durable == 0:
        return state, version, snapshot_version
    if until is None and use_snapshots:
        snapshot = await journal.load_snapshot(stream_id, max_version=to_version)
        if snapshot is not None and not _of_schema(snapshot.metadata, aggregate):
            # Another aggregate's or schema's, such as those of a deploy that bumped
            # snapshot_schema and was rolled back: an older one of this schema may be kept.
            # Only then a second lookup; the newest one is of the schema in the common case.
            snapshot = await journal.load_snapshot_matching(
                stream_id,
                {
                    SNAPSHOT_AGGREGATE_KEY: aggregate.name,
                    SNAPSHOT_SCHEMA_KEY: aggregate.snapshot_schema,
                },
                max_version=snapshot.version - 1,
            )
        if snapshot is not None:
            try:
                state = aggregate.decode_state(snapshot.data)
            except SnapshotShapeMismatch as error:
                # Expected after a change of the state's shape without a schema bump: no bug
                # to trace, and the events give the right state.
                _log_shape_changed(aggregate.name, stream_id, snapshot.version, error, repeats)
                state = aggregate.initial
            except Exception as error:
                _log_not_decoded(aggregate.name, stream_id, snapshot.version, error, repeats)
                state = aggregate.initial
            else:
                version = snapshot_version = snapshot.version
    evolve = aggregate.evolve
    decoders = aggregate.decoders
    read_chunk = journal.read_chunk
    last_type: str | None = None
    decode: Callable[[Any], Any]
    data: Any = None
    # Up to the version durable now: an entity's events are appended through its one live
    # actor, so a rebuild for activation reads to the end (and state_at to the end it asked).
    target = durable if to_version is None else min(durable, to_version)
    # ``recorded_at`` is the stamp cut to the microsecond: it is after ``until`` exactly when
    # the stamp in nanoseconds is after the last nanosecond of ``until``'s microsecond.
    last_ns = None if until is None else (until - _EPOCH) // _MICROSECOND * 1_000 + 999
    while version < target:
        chunk = await read_chunk(stream_id, version + 1, target)
        if chunk is None:
            break
        types = chunk.types
        stored = chunk.data
        if last_ns is not None:
            # Up to the first event recorded after ``until`` (stamps need not rise: a clock
            # may be set back), found in the stamps, without an event object per event.
            cut = next((i for i, ns in enumerate(chunk.recorded_at_ns) if ns > last_ns), None)
            if cut is not None:
                types = types[:cut]
                stored = stored[:cut]
                target = chunk.first_version + cut - 1  # The fold ends with this chunk.
        try:
            # The replay loop of every activation: the user's code, and a decoder lookup only
            # where the type changes (a chunk's events of one type share one type string).
            # Which event failed is worked out only if one does (_replay_failed).
            for type_name, data in zip(types, stored, strict=True):
                if type_name is not last_type:
                    decode = decoders.get(type_name) or _unknown(aggregate, type_name)
                    last_type = type_name
                state = evolve(state, decode(data))
        except Exception as error:
            version = _replay_failed(error, aggregate, chunk, None, data)
            if reached is not None:
                reached.append(version)
            raise
        version = chunk.first_version + len(types) - 1
    if state is initial and aggregate._initial_copy is not None:
        # Folded in place into initial itself (or every event left the state as it was).
        check_initial(aggregate.name, initial, aggregate._initial_copy)
    return state, version, snapshot_version


def _replay_failed(
    error: Exception,
    aggregate: Aggregate[Any, Any, Any],
    chunk: StreamChunk,
    index: int | None,
    data: Any,
) -> int:
    """Note on ``error`` which stored event of ``chunk`` failed to fold (its index, or None
    when it is the event holding ``data``); answer the version of the state reached.

    The first event holding ``data`` itself: each event's data is its own object, and where
    one is shared (a journal may share equal scalars), the decoder, being deterministic,
    fails on its first event.
    """
    if index is None:
        index = next((i for i, item in enumerate(chunk.data) if item is data), None)
    first = chunk.first_version
    found = index is not None and 0 <= index < len(chunk.types)
    if index is None or not found:
        where = f"one of its events {first} to {chunk.last_version}"
        index = 0
    else:
        where = f"its event {first + index}, stored as {chunk.types[index]!r},"
    if isinstance(error, UnknownEventType):
        why = (
            "the aggregate registers no way to read that type (see above). The stored events "
            "are unchanged: once the code reads that type"
        )
    else:
        why = (
            "an upcaster, the EventType's decode or evolve raised this. The stored events are "
            "unchanged: fix that code so that it reads events stored in this form, and once it "
            "does"
        )
    error.add_note(
        f"while replaying stream {chunk.stream_id!r} (aggregate {aggregate.name!r}): "
        f"{where} could not be folded: {why}, the entity can be activated again"
    )
    if found:  # Which data of which type, when its class no longer takes it.
        aggregate.explain_decoding_failure(error, chunk.types[index], chunk.data[index])
    return first + index - 1


def _unknown(aggregate: Aggregate[Any, Any, Any], type_name: str) -> Callable[[Any], Any]:
    aggregate.decode_event(type_name, None)  # raises UnknownEventType with the full story
    raise AssertionError("unreachable: decode_event accepted an unknown type")


def _log_shape_changed(
    aggregate: str, stream_id: str, version: int, error: Exception, repeats: Repeats
) -> None:
    """Log a snapshot of an earlier state shape, skipped: as a warning once a minute for the
    aggregate (every entity snapshotted before the change has one), at debug level otherwise
    (see ``_repeats``)."""
    since = repeats.due(f"snapshot shape of {aggregate}", error)
    if since is None:
        logger.debug(
            "snapshot of %r at version %d is skipped, the events are folded instead: %.300s",
            stream_id,
            version,
            error,
        )
        return
    logger.warning(
        "snapshot of %r at version %d is skipped, the events are folded instead: %s. Later "
        "snapshots of %r skipped so %s are logged at debug level%s",
        stream_id,
        version,
        error,
        aggregate,
        IN_THE_NEXT_MINUTE,
        since_last(since),
    )


def _log_not_decoded(
    aggregate: str, stream_id: str, version: int, error: Exception, repeats: Repeats
) -> None:
    """Log a snapshot ``decode_state`` cannot decode: with its traceback once a minute for
    the aggregate and the class of exception (the same code fails alike for every entity),
    at debug level otherwise (see ``_repeats``)."""
    since = repeats.due(f"decode_state of {aggregate}", error)
    if since is None:
        logger.debug(
            "snapshot of %r at version %d cannot be decoded (%s: %.300s); replaying in full",
            stream_id,
            version,
            type(error).__name__,
            error,
        )
        return
    logger.error(
        "snapshot of %r at version %d cannot be decoded; replaying in full (fix decode_state, "
        "or bump snapshot_schema if the state's shape or what encode_state stores changed). "
        "Later snapshots of %r that fail so with %s %s are logged at debug level, without a "
        "traceback%s",
        stream_id,
        version,
        aggregate,
        type(error).__name__,
        IN_THE_NEXT_MINUTE,
        since_last(since),
        exc_info=error,
    )
