"""The engine under the Runtime: admission, activation, execution (freeing slots and what a
failure leaves are in ``_settling``, passivation and the snapshot queue in ``_passivation``).

Everything here runs in the callers' tasks. The one task it starts, in the runtime's task
group, settles an append whose caller went away (``settle_abandoned_append``); the Runtime
adds the lifecycle, the public calls and its few background tasks, and ``_told`` the told
commands.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from journals import (
    Journal,
    JournalClosed,
    JournalError,
    NewEvent,
    QueuedAppend,
)

from ._abandoned import wait_until_placed
from ._actor import UNWATCHED, Actor, Parking, rebuild
from ._aggregate import Aggregate
from ._clock import Clock, SystemClock
from ._deadlines import WaiterDeadlines, within
from ._exceptions import (
    CommandRejected,
    EntityStopped,
    MailboxTimeout,
    RuntimeClosed,
    WaitedFor,
)
from ._rate import RecentRate
from ._repeats import Repeats
from ._settings import check_bound
from ._settling import Settling
from ._snapshots import SnapshotEncoder
from ._statistics import Counters
from ._supervision import SUPERVISED_PRUNE_MIN, RestartPolicy, Supervised
from ._types import CommandResult, LifecycleEvent, LifecycleKind

_new_tuple = tuple.__new__

NOT_RUNNING = (
    "the runtime is not running; send commands inside 'async with Runtime(journal) as runtime:'"
)
SHUT_DOWN = (
    "the runtime is shutting down or has shut down (its 'async with' block was left); the "
    "command was not accepted and not executed"
)


# The engines that have activated an entity, so that one more can tell whether another
# running one on its journal serves the same aggregate name (see _claim_name).
_SERVING: weakref.WeakSet[Engine] = weakref.WeakSet()


class Engine(Settling):
    """The actors of one runtime and how commands run against them (see ``Runtime``)."""

    def __init__(
        self,
        journal: Journal,
        *,
        mailbox_bound: int,
        max_live_actors: int | None,
        snapshot_on_passivation: bool,
        restart_policy: RestartPolicy | None,
        clock: Clock | None,
        on_lifecycle: Callable[[LifecycleEvent], None] | None,
    ) -> None:
        mailbox_bound = check_bound("mailbox_bound", mailbox_bound)
        if max_live_actors is not None:
            max_live_actors = check_bound("max_live_actors", max_live_actors, or_none=True)
        self._journal = journal
        self._mailbox_bound = mailbox_bound
        self._max_live_actors = max_live_actors
        self._snapshot_on_passivation = snapshot_on_passivation
        self._policy = restart_policy or RestartPolicy()
        self._clock: Clock = clock or SystemClock()
        self._on_lifecycle = self._checked_observer(on_lifecycle)
        # Invariant: iteration order of _actors is the order of last use (least recently used
        # first) when max_live_actors is set, a use being a command that finds the actor
        # (admitted at once or not), an eviction that finds it busy (see
        # _evict_least_recently_used), or the answer that leaves it idle in a later tick than
        # its last use (_idle_since_now); otherwise the order of the tick of last use
        # (non-decreasing), which is all the idle sweeper needs, so an actor moves to the end
        # at most once per tick (moving costs a dictionary pop and insert). Either way an
        # actor moves with its tick: the ticks never decrease along that order.
        self._actors: dict[str, Actor] = {}
        # Invariant: the live actors with a slot taken (in_flight > 0), which are all that
        # statistics() looks at: an actor joins it as it takes its first slot and leaves it as
        # it frees its last one (a set operation per command only for an idle actor).
        self._busy: set[Actor] = set()
        self._idle_kept = 0  # see _passivation
        self._all_busy_at = 0
        self._supervised: dict[str, Supervised] = {}
        self._stopped: dict[str, Supervised] = {}  # see _supervision
        self._cooldowns: deque[tuple[float, str, Supervised]] = deque()
        self._aggregates: dict[str, Aggregate[Any, Any, Any]] = {}  # by name; see _activate
        self._supervised_prune_at = SUPERVISED_PRUNE_MIN
        self._tick = 0
        self._in_flight = 0
        # Two kinds of callers held before their command runs, other than for room in a
        # mailbox: sleeping out a restart backoff (_supervision), or held by an append of their
        # entity waiting for room in the journal (_admit, wait_until_placed), an asked
        # command's own included. The outbox's counts its own. Those waiting for an activation
        # or for a broken actor to settle are counted nowhere.
        self._waiting_for_restart = 0
        self._waiting_for_journal = 0
        # The appends waiting for room in the journal, asked or told (wait_until_placed).
        self._appends_waiting_for_journal = 0
        self._accepting = False
        self._refusal = NOT_RUNNING  # Why commands are refused while not accepting.
        self._closed = True
        self._drained: anyio.Event | None = None
        self._counters = Counters()
        self._rate = RecentRate()  # of Counters.commands (_rate)
        self._snapshot_send: Any = None
        self._repeats = Repeats()  # When failures were last logged in full (_repeats).
        self._snapshot_encoder = SnapshotEncoder(self._repeats)
        self._snapshots_queued: dict[str, int] = {}  # see _passivation
        self._task_group: TaskGroup | None = None
        self._deadlines = WaiterDeadlines()  # of callers waiting for room
        self._parking = Parking()  # bound to the event loop again when the runtime starts

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise RuntimeClosed(self._refusal)

    def _timed_out(
        self, stream_id: str, timeout_s: float | None, waited_for: WaitedFor
    ) -> MailboxTimeout:
        """The refusal of a call not accepted within its ``timeout_s`` (``_refused`` counts it
        once it reaches its caller)."""
        return MailboxTimeout(stream_id, cast(float, timeout_s), waited_for)

    def _refused(self, refusal: MailboxTimeout | EntityStopped) -> None:
        """Count a refusal of admission as it reaches its caller (``ask``, ``state``, ``tell``),
        not where admission raises it: a told command is admitted in a task of its own, and
        a ``tell`` cancelled meanwhile gets its cancellation, not the refusal. (The outbox's
        deliverer counts a queued command refused for a stopped entity itself.)"""
        if isinstance(refusal, EntityStopped):
            self._counters.entity_stopped_refusals += 1
        else:
            self._counters.mailbox_timeouts += 1

    # -- admission: find or activate the actor, reserve a place in its mailbox --------------

    async def _admit(
        self,
        aggregate: Aggregate[Any, Any, Any],
        stream_id: str,
        timeout_s: float | None,
        queued: bool = False,
    ) -> Actor:
        """Find or activate the actor and take a mailbox slot within ``timeout_s``.

        Raises ``MailboxTimeout`` once the deadline passed, before the command ran. One
        coroutine, not two: under overload it is entered thousands of times a second.
        ``queued``: the command comes out of ``tell_nowait``'s outbox, which counts it until
        it has a slot (it is no caller waiting for room).
        """
        deadline = None if timeout_s is None else self._parking.now() + timeout_s
        actors = self._actors
        while True:
            if self._closed:
                raise RuntimeClosed(self._refusal)
            actor = actors.get(stream_id)
            if actor is None:
                # Activation, the path of every first command to an entity: the restart check
                # and the deadline only where there is one.
                if stream_id in self._supervised:
                    done, slept = await within(deadline, self._wait_for_restart, stream_id, queued)
                    if not done:
                        raise self._timed_out(stream_id, timeout_s, "restart")
                    if slept or stream_id in actors:
                        continue
                if deadline is None:
                    await self._activate(aggregate, stream_id)
                    continue
                done, _ = await within(deadline, self._activate, aggregate, stream_id)
                if not done:
                    raise self._timed_out(stream_id, timeout_s, "activation")
                continue
            if actor.aggregate is not aggregate:
                raise ValueError(
                    f"stream {stream_id!r} is live for another Aggregate object named "
                    f"{actor.aggregate.name!r}; aggregate names must be unique in a runtime"
                )
            ready = actor.ready
            if ready is not None:
                if ready is UNWATCHED:
                    ready = actor.ready = self._parking.event()
                if actor.in_flight and not queued:
                    # Behind an append of the entity waiting for room in the journal, which
                    # holds its command's slot (an activating actor holds none).
                    self._waiting_for_journal += 1
                    try:
                        done, _ = await within(deadline, ready.wait)
                    finally:
                        self._waiting_for_journal -= 1
                else:
                    done, _ = await within(deadline, ready.wait)
                if not done:
                    raise self._timed_out(stream_id, timeout_s, "activation")
                continue
            waiting = actor.waiting
            if actor.broken is not None:
                waiting = actor.waits()
                if waiting.settled is None:
                    waiting.settled = anyio.Event()
                done, _ = await within(deadline, waiting.settled.wait)
                if not done:
                    raise self._timed_out(stream_id, timeout_s, "settling")
                continue
            if actor.in_flight < self._mailbox_bound and (waiting is None or not waiting.mailbox):
                if not actor.in_flight:
                    self._busy.add(actor)
                actor.in_flight += 1
                self._in_flight += 1
            else:
                # Waiting for room is the path that overload takes, thousands of times a
                # second: its deadline is kept by one task for all waiters (WaiterDeadlines)
                # rather than by a cancel scope and a timer per caller.
                parking = self._parking
                parked = parking.create()
                entry: list[Any] = [parked, False, False, queued]  # see Waiting
                actor.waits().park(entry)
                if deadline is not None:
                    self._deadlines.watch(deadline, entry, parking)
                try:
                    if parking.awaitable:
                        await parked
                    else:
                        await parked.wait()
                except BaseException:
                    if entry[1]:
                        self._release(actor)  # a slot was handed over: give it back
                    else:
                        # Marked, not searched for and removed (thousands of callers may be
                        # cancelled at once): hand-offs skip it like an expired entry.
                        entry[2] = True
                    raise
                if entry[2]:
                    raise self._timed_out(stream_id, timeout_s, "room")
                if not entry[1]:
                    continue  # woken without a slot: the actor broke or the runtime closes
                if actor.broken is not None or actor.ready is not None:
                    # Handed a slot, then the actor broke (its state is gone) or an append of
                    # it began to wait for room before this caller ran: give the slot back and
                    # wait for the fresh activation, or for that append to be placed.
                    self._release(actor)
                    continue
            actor.tick = self._tick
            actors[stream_id] = actors.pop(stream_id)
            return actor

    def _uses_snapshots(self, aggregate: Aggregate[Any, Any, Any]) -> bool:
        """Whether the aggregate's entities are rebuilt from snapshots: only where they are
        taken (elsewhere a lookup is wasted, and a snapshot left from another setting is not
        trusted), by activation and by ``state_at`` alike."""
        return self._snapshot_on_passivation or aggregate.snapshot_every is not None

    async def _activate(self, aggregate: Aggregate[Any, Any, Any], stream_id: str) -> None:
        # Checked here, not per command: the streams of one name belong to one Aggregate
        # object for the runtime's lifetime, whether or not the other one's actor is live.
        known = self._aggregates.get(aggregate.name)
        if known is None:
            self._claim_name(aggregate.name, stream_id)
            self._aggregates[aggregate.name] = known = aggregate
        if known is not aggregate:
            raise ValueError(
                f"stream {stream_id!r} belongs to another Aggregate object named "
                f"{aggregate.name!r}; aggregate names must be unique in a runtime"
            )
        # A restart or not is known now (_wait_for_restart has just run): the sweeper may
        # prune an expired record while the entity replays.
        supervised = self._supervised.get(stream_id)
        actor = Actor(stream_id, aggregate, self._tick, UNWATCHED)
        self._actors[stream_id] = actor
        reached: list[int] = []
        # Read before the journal is: the writer may store it and forget it meanwhile.
        snapshot_queued = self._snapshots_queued.get(stream_id, 0)
        try:
            state, version, snapshot_version = await rebuild(
                self._journal,
                aggregate,
                stream_id,
                use_snapshots=self._uses_snapshots(aggregate),
                reached=reached,
                repeats=self._repeats,
            )
        except BaseException as error:
            actor.broken = error
            if self._actors.get(stream_id) is actor:
                del self._actors[stream_id]
            if isinstance(error, Exception) and not isinstance(error, JournalError):
                self._activation_crashed(stream_id, aggregate.name, reached, error)
            if self._closed and isinstance(error, JournalClosed):
                # The runtime shut down (and closed its journal) under the activation.
                raise RuntimeClosed(self._refusal) from error
            raise
        finally:
            ready, actor.ready = actor.ready, None
            if ready is not UNWATCHED:
                ready.set()  # The event a caller made to wait for the activation.
        if self._closed:
            # The runtime shut down under the replay: its callers get RuntimeClosed, and an
            # entity that never becomes live is neither counted nor announced.
            if self._actors.get(stream_id) is actor:
                del self._actors[stream_id]
            raise RuntimeClosed(self._refusal)
        actor.state = state
        actor.version = actor.durable = version
        actor.snapshot_at = max(snapshot_version, snapshot_queued)  # see _passivation
        self._counters.activations += 1
        kind: LifecycleKind = "recovered" if version else "started"
        if supervised is not None and supervised.restart_pending:
            supervised.restart_pending = False
            self._counters.restarts += 1
            kind = "restarted"
        self._notify(kind, aggregate.name, stream_id, version)
        if self._max_live_actors is not None and len(self._actors) > self._max_live_actors:
            self._evict_least_recently_used(len(self._actors) - self._max_live_actors, actor)

    def _claim_name(self, name: str, stream_id: str) -> None:
        """Refuse an aggregate name that another running runtime on this journal serves.

        Each would hold its own actor of an entity: one of them decides against a state that
        lacks the other's events (and answers ``state`` with it), and its appends fail with
        ``ConcurrencyError``. Checked at the first activation of each name, not per command.
        """
        for other in _SERVING:
            if (
                other is not self
                and other._journal is self._journal
                and not other._closed
                and name in other._aggregates
            ):
                raise ValueError(
                    f"stream {stream_id!r}: aggregate {name!r} is served by another running "
                    f"Runtime on this journal; each would keep its own state of an entity, "
                    f"one of them missing the other's events, and their appends would fail "
                    f"on each other's with ConcurrencyError. Send all of an aggregate's "
                    f"commands through one Runtime per journal"
                )
        _SERVING.add(self)

    # -- execution ---------------------------------------------------------------------------

    async def _execute(
        self,
        aggregate: Aggregate[Any, Any, Any],
        stream_id: str,
        command: Any,
        timeout_s: float | None,
        actor: Actor | None = None,
        told: bool = False,
    ) -> CommandResult[Any]:
        """Admit the command (unless ``actor`` is given: its slot is held already), decide
        and append. One coroutine for the whole command: it is the one ``ask`` answers.
        ``told``: its caller has returned (``tell``, ``tell_nowait``) and waits for nothing."""
        if actor is None:
            if not self._accepting:
                self._check_accepting()
            # The common case inline: a live, ready actor with room (else _admit waits).
            actors = self._actors
            actor = actors.get(stream_id)
            if actor is not None:
                if actor.tick != self._tick or self._max_live_actors is not None:
                    # Moved with its tick, even if the command must wait: see the invariant.
                    actors[stream_id] = actors.pop(stream_id)
                    actor.tick = self._tick
                waiting = actor.waiting
                if (
                    actor.ready is None
                    and actor.broken is None
                    and actor.aggregate is aggregate
                    and actor.in_flight < self._mailbox_bound
                    and (waiting is None or not waiting.mailbox)
                ):
                    if not actor.in_flight:
                        self._busy.add(actor)
                    actor.in_flight += 1
                    self._in_flight += 1
                else:
                    actor = None
            if actor is None:
                try:
                    actor = await self._admit(aggregate, stream_id, timeout_s)
                except (MailboxTimeout, EntityStopped) as refusal:
                    self._refused(refusal)
                    raise
        state0 = actor.state
        version0 = actor.version
        try:
            events = aggregate.decide(state0, command)
            if events:
                # Checked here (an unregistered event is a crash in decide); handed to the
                # journal below and not kept while the append waits.
                types, data = aggregate.event_columns(events)
                state = state0
                evolve = aggregate.evolve
                for event in events:
                    state = evolve(state, event)
            elif events.__class__ is not list and (
                not isinstance(events, Sequence) or isinstance(events, str | bytes)
            ):  # None (a forgotten return), 0, {}, "": checked only on the no-events path.
                raise aggregate.invalid_decision(events)
        except CommandRejected:
            self._counters.rejections += 1
            await self._answer_in_order(actor, version0)
            raise
        except Exception as error:
            aggregate.explain_crash(error, command, state0, version0 > 0)
            self._crash(actor, error)
            raise
        except BaseException as error:
            # KeyboardInterrupt and the like: no crash for the supervisor, but the actor is
            # rebuilt, since an evolve that changes the state in place may have begun.
            self._break(actor, error)
            self._release(actor)
            raise
        if not events:
            await self._answer_in_order(actor, version0)
            self._counters.commands += 1
            return CommandResult(version0, None, ())
        version = version0 + len(events)
        # Invariant: from here to the append's placement in the log nothing yields, so the
        # next command of this actor is decided against this state and appended after it.
        actor.state = state
        actor.version = version
        snapshot_at = actor.snapshot_at
        every = aggregate.snapshot_every
        snapshot = every is not None and version - snapshot_at >= every
        if snapshot:
            actor.snapshot_at = version
        encoded: Any  # The snapshot's data and metadata, when one is taken.
        journal = self._journal
        stream = actor.stream_id
        queued: QueuedAppend | None = None
        try:
            if snapshot:
                # Encoded now, before anything yields: the snapshot is of this state even if
                # evolve changes it in place later. One that cannot be taken is not retried
                # before the next is due: it would fail again, at the cost of every command.
                encoded = self._encode_snapshot(actor, state)
                snapshot = encoded is not None
            started = journal.start_append_columns(stream, types, data, expected_version=version0)
            if started is None:
                actor.last_outcome = None  # Answers held behind this append wait by version.
                queued = journal.queue_append_columns(
                    stream, types, data, expected_version=version0
                )
                if queued is not None:
                    started = await wait_until_placed(self, actor, queued, told)
                else:
                    new_events = list(map(NewEvent, types, data))
                    del types, data  # The journal holds its own form of them once it has them.
                    pending = journal.append(stream, new_events, expected_version=version0)
                    del new_events
                    result = await pending
                    appended, position = result.version, result.position
        except BaseException as error:
            if queued is not None and not queued.withdraw():
                # Placed just as its caller went away: settled as any started append.
                if snapshot:
                    actor.snapshot_not_taken(version, snapshot_at)
                durable, outcome, _, _ = queued.started()
                close = getattr(durable, "close", None)  # A coroutine (trio) is not awaited.
                if close is not None:
                    close()
                self._append_lost(actor, error, version0, version, outcome)
                raise
            if queued is not None or isinstance(error, ValueError):
                self._append_refused(actor, error, version0)  # refused, or taken back
            else:
                if snapshot:  # Not queued: the next command due or passivation takes it.
                    actor.snapshot_not_taken(version, snapshot_at)
                self._append_lost(actor, error, version0, version)  # it may have been written
            raise
        if started is not None:
            # Placed, with nothing to await but durability: only the journal's outcome or a
            # cancellation can fail it now. The wait keeps what the answer needs, not the
            # command, its events' journal form or the states before and after: with
            # thousands of answers waiting, that is thousands fewer objects for the cyclic GC.
            durable, outcome, appended, position = started
            actor.last_outcome = outcome
            del started, types, data, command, state0, state
            try:
                await durable
                outcome.raise_error()
            except BaseException as error:
                if snapshot:
                    actor.snapshot_not_taken(version, snapshot_at)
                self._append_lost(actor, error, version0, version, outcome)
                raise
        if appended > actor.durable:
            actor.durable = appended
            if appended >= actor.version:
                actor.last_outcome = None  # Nothing in flight: do not keep the batch alive.
        if actor.waiting is None and actor.in_flight > 1:  # _release's common case, inline
            actor.in_flight -= 1
            self._in_flight -= 1
        else:
            self._release(actor)
        self._counters.commands += 1
        if snapshot and not self._queue_snapshot(actor, version, encoded):
            actor.snapshot_not_taken(version, snapshot_at)
        # The tuple built directly: the named tuple's own __new__ is a Python call.
        return _new_tuple(CommandResult, (appended, position, tuple(events)))

    async def _answer_in_order(self, actor: Actor, version: int) -> None:
        """Hold an answer until the events decided before it are durable; free the slot.

        When the append that reached ``version`` was started (``Journal.start_append``), the
        answer waits on that append's outcome itself: its wait is woken after the appends
        placed before it and before those placed after it, so answers come back in the order
        they were decided, and it fails as that append fails. Otherwise it waits until the
        actor's durable version reaches ``version`` (``_release`` wakes it, ``_fail_from``
        fails it).
        """
        try:
            if actor.durable < version:
                outcome = actor.last_outcome
                if outcome is not None and version == actor.version:
                    await outcome.wait()
                    outcome.raise_error()
                    return
                entry: list[Any] = [version, self._parking.event(), None]
                drains = actor.waits().drains
                drains.append(entry)
                try:
                    await entry[1].wait()
                finally:
                    if entry in drains:
                        drains.remove(entry)
                if entry[2] is not None:
                    raise entry[2]
        finally:
            self._release(actor)
