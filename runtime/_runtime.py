"""The Runtime: finds or wakes the actor of an entity and runs commands against it."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from journals import Journal, JournalError

from ._actor import SNAPSHOT_AGGREGATE_KEY, SNAPSHOT_SCHEMA_KEY, Actor, logger, rebuild
from ._aggregate import Aggregate
from ._clock import Clock, SystemClock
from ._exceptions import (
    ActorRuntimeError,
    CommandRejected,
    EntityStopped,
    MailboxFull,
    MailboxTimeout,
    RuntimeClosed,
)
from ._statistics import Counters, statistics_of
from ._supervision import RestartPolicy, Supervised, decide_after_crash
from ._types import CommandResult, LifecycleEvent, LifecycleKind, RuntimeStatistics

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")

_SWEEPS_PER_IDLE_PERIOD = 4


class Runtime:
    """Runs commands against entities, one lightweight actor per live entity.

    ::

        async with MemoryJournal() as journal, Runtime(journal) as runtime:
            result = await runtime.ask(account, "42", Deposit(100))

    ``ask`` runs in the caller's task: it finds or activates the entity's actor, decides the
    command against the state in memory, and appends the events; it answers once they are
    durable. Commands to one entity are decided one after another; while earlier events wait
    for the journal's group commit the next commands are already decided (pipelining), and
    answers are released in order. At most ``mailbox_bound`` commands per entity are
    accepted and unanswered; further callers wait (``ask``, ``tell``) or are refused
    (``tell_nowait``).

    Settings: ``max_live_actors`` evicts the least recently used idle actors beyond that
    number; ``passivate_after_s`` evicts actors idle for that long (checked by one sweeper,
    up to 25 % later); ``snapshot_on_passivation`` stores a snapshot of an evicted actor whose
    state is newer than its last snapshot; ``restart_policy`` governs crashes;
    ``on_lifecycle`` is called with a ``LifecycleEvent`` for every lifecycle change;
    ``shutdown_timeout_s`` bounds how long leaving the context waits for commands in flight.

    The journal belongs to the caller and stays open, unless ``owns_journal=True``: then the
    runtime enters it on start and closes it on exit.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        mailbox_bound: int = 1024,
        max_live_actors: int | None = None,
        passivate_after_s: float | None = None,
        snapshot_on_passivation: bool = False,
        restart_policy: RestartPolicy | None = None,
        clock: Clock | None = None,
        on_lifecycle: Callable[[LifecycleEvent], None] | None = None,
        shutdown_timeout_s: float = 10.0,
        owns_journal: bool = False,
        outbox_bound: int = 10_000,
        snapshot_queue_bound: int = 1024,
    ) -> None:
        if mailbox_bound < 1:
            raise ValueError(f"mailbox_bound must be at least 1, not {mailbox_bound}")
        if max_live_actors is not None and max_live_actors < 1:
            raise ValueError(f"max_live_actors must be at least 1, not {max_live_actors}")
        if passivate_after_s is not None and not passivate_after_s > 0:
            raise ValueError(f"passivate_after_s must be > 0, not {passivate_after_s}")
        self._journal = journal
        self._mailbox_bound = mailbox_bound
        self._max_live_actors = max_live_actors
        self._passivate_after_s = passivate_after_s
        self._snapshot_on_passivation = snapshot_on_passivation
        self._policy = restart_policy or RestartPolicy()
        self._clock: Clock = clock or SystemClock()
        self._on_lifecycle = on_lifecycle
        self._shutdown_timeout_s = shutdown_timeout_s
        self._owns_journal = owns_journal
        self._outbox_bound = outbox_bound
        self._snapshot_queue_bound = snapshot_queue_bound
        # Invariant: iteration order of _actors is the order of last admission (LRU first).
        self._actors: dict[str, Actor] = {}
        self._supervised: dict[str, Supervised] = {}
        self._tick = 0
        self._in_flight = 0
        self._accepting = False
        self._closed = True
        self._drained: anyio.Event | None = None
        self._task_group: TaskGroup | None = None
        self._counters = Counters()
        self._started_at = 0.0
        self._outbox_send: Any = None
        self._snapshot_send: Any = None
        self._workers_done: list[anyio.Event] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("a Runtime can be entered only once; create a new one")
        if self._owns_journal:
            await self._journal.__aenter__()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        outbox_send, outbox_receive = anyio.create_memory_object_stream[tuple[Any, str, Any]](
            self._outbox_bound
        )
        snapshot_send, snapshot_receive = anyio.create_memory_object_stream[
            tuple[str, int, Any, dict[str, Any]]
        ](self._snapshot_queue_bound)
        self._outbox_send, self._snapshot_send = outbox_send, snapshot_send
        self._workers_done = [anyio.Event(), anyio.Event()]
        task_group.start_soon(self._deliver_outbox, outbox_receive, self._workers_done[0])
        task_group.start_soon(self._write_snapshots, snapshot_receive, self._workers_done[1])
        if self._passivate_after_s is not None:
            task_group.start_soon(self._sweep, self._passivate_after_s)
        self._started_at = self._clock.now()
        self._closed = False
        self._accepting = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        task_group = self._task_group
        if task_group is None or self._closed:
            return None
        self._accepting = False
        try:
            with anyio.move_on_after(self._shutdown_timeout_s, shield=True):
                # Commands already accepted by tell_nowait are delivered first.
                self._outbox_send.close()
                await self._workers_done[0].wait()
                self._close_mailboxes()
                if self._in_flight:
                    self._drained = anyio.Event()
                    await self._drained.wait()
                self._snapshot_send.close()
                await self._workers_done[1].wait()
        finally:
            self._close_mailboxes()
            self._snapshot_send.close()
            task_group.cancel_scope.cancel()
            try:
                suppress = await task_group.__aexit__(exc_type, exc, traceback)
            finally:
                if self._owns_journal:
                    with anyio.CancelScope(shield=True):
                        await self._journal.aclose()
        return suppress

    def _close_mailboxes(self) -> None:
        """Stop accepting; wake callers waiting for room so that they fail with RuntimeClosed."""
        self._closed = True
        for actor in self._actors.values():
            waiting = actor.waiting
            if waiting is not None and waiting.mailbox:
                for entry in waiting.mailbox:
                    entry[0].set()
                waiting.mailbox.clear()

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise RuntimeClosed(
                "the runtime is not running; send commands inside "
                "'async with Runtime(journal) as runtime:'"
            )

    # -- commands ----------------------------------------------------------------------------

    async def ask(
        self,
        aggregate: Aggregate[S, C, E],
        entity_id: str,
        command: C,
        *,
        timeout_s: float | None = None,
    ) -> CommandResult[E]:
        """Run ``command`` against entity ``entity_id``; answer once its events are durable.

        Raises ``CommandRejected`` (the domain said no; nothing written), the exception of a
        crash in ``decide``/``evolve`` (the actor restarts), a journal error (the events are
        not acknowledged; the actor is rebuilt from what is durable), ``MailboxTimeout`` when
        the command was not accepted within ``timeout_s`` (it was not executed),
        ``EntityStopped`` and ``RuntimeClosed``.
        """
        if not self._accepting:
            self._check_accepting()
        stream_id = aggregate._stream_prefix + entity_id
        actors = self._actors
        actor = actors.pop(stream_id, None)
        if actor is None:
            actor = await self._admit(aggregate, stream_id, timeout_s)
        else:
            actors[stream_id] = actor
            waiting = actor.waiting
            if (
                actor.ready is None
                and actor.broken is None
                and actor.aggregate is aggregate
                and actor.in_flight < self._mailbox_bound
                and (waiting is None or not waiting.mailbox)
            ):
                actor.in_flight += 1
                self._in_flight += 1
                actor.tick = self._tick
            else:
                actor = await self._admit(aggregate, stream_id, timeout_s)
        return await self._execute(actor, command)

    async def tell(
        self,
        aggregate: Aggregate[S, C, E],
        entity_id: str,
        command: C,
        *,
        timeout_s: float | None = None,
    ) -> None:
        """Send ``command`` without waiting for its answer; return once it is accepted.

        Waits for room in the entity's mailbox (up to ``timeout_s``), and raises what
        prevents acceptance (``MailboxTimeout``, ``EntityStopped``, ``RuntimeClosed``). Its
        outcome is not reported to the caller: rejections and journal errors are counted and
        logged, crashes are also reported to ``on_lifecycle``. Commands told one after another
        by one task are decided in that order.
        """
        self._check_accepting()
        assert self._task_group is not None
        await self._task_group.start(self._run_told, aggregate, entity_id, command, timeout_s)

    def tell_nowait(self, aggregate: Aggregate[S, C, E], entity_id: str, command: C) -> None:
        """Send ``command`` from synchronous code; raise ``MailboxFull`` instead of waiting.

        The command is queued in the runtime's outbox (``outbox_bound``) and delivered in
        order by one task, as ``tell`` would; it raises ``MailboxFull`` when the entity's
        mailbox or the outbox is full. An entity whose mailbox stays full delays the delivery
        of the commands queued after it.
        """
        self._check_accepting()
        stream_id = aggregate._stream_prefix + entity_id
        actor = self._actors.get(stream_id)
        if actor is not None and actor.in_flight >= self._mailbox_bound:
            raise MailboxFull(stream_id, self._mailbox_bound)
        try:
            self._outbox_send.send_nowait((aggregate, entity_id, command))
        except anyio.WouldBlock:
            raise MailboxFull(stream_id, self._outbox_bound, outbox=True) from None

    async def state(
        self, aggregate: Aggregate[S, C, E], entity_id: str, *, timeout_s: float | None = None
    ) -> S:
        """The entity's current state, once every event it includes is durable."""
        self._check_accepting()
        actor = await self._admit(aggregate, aggregate._stream_prefix + entity_id, timeout_s)
        state: S = actor.state
        await self._answer_in_order(actor, actor.version)
        return state

    async def state_at(
        self,
        aggregate: Aggregate[S, C, E],
        entity_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> S:
        """Rebuild a past state from the journal, leaving the live actor alone.

        ``version=N``: the state after the entity's first N events (uses a snapshot at or
        below N when there is one). ``at=datetime`` (timezone-aware): the state after every
        event recorded at or before that moment.
        """
        if (version is None) == (at is None):
            raise ValueError("state_at takes exactly one of version=... or at=...")
        if version is not None and version < 0:
            raise ValueError(f"version must be >= 0, not {version}")
        if at is not None and at.tzinfo is None:
            raise ValueError("at must be a timezone-aware datetime (for example in UTC)")
        stream_id = aggregate._stream_prefix + entity_id
        if version == 0:
            return aggregate.initial
        state, _, _ = await rebuild(
            self._journal, aggregate, stream_id, to_version=version, until=at
        )
        result: S = state
        return result

    def reset(self, aggregate: Aggregate[Any, Any, Any], entity_id: str) -> None:
        """Forget the entity's crash history, releasing a stopped entity."""
        stream_id = aggregate._stream_prefix + entity_id
        supervised = self._supervised.pop(stream_id, None)
        if supervised is not None:
            self._notify("reset", aggregate.name, stream_id, 0, supervised.last_failure)

    def statistics(self) -> RuntimeStatistics:
        """A frozen record of the runtime's counters and of its live actors now."""
        return statistics_of(
            self._counters,
            self._actors.values(),
            stopped_entities=sum(1 for s in self._supervised.values() if s.stopped),
            commands_in_flight=self._in_flight,
            uptime_s=max(self._clock.now() - self._started_at, 0.0),
            journal=self._journal.statistics(),
        )

    # -- admission: find or activate the actor, reserve a place in its mailbox --------------

    async def _admit(
        self, aggregate: Aggregate[Any, Any, Any], stream_id: str, timeout_s: float | None
    ) -> Actor:
        if timeout_s is None:
            return await self._admit_loop(aggregate, stream_id)
        try:
            with anyio.fail_after(timeout_s):
                return await self._admit_loop(aggregate, stream_id)
        except TimeoutError:
            raise MailboxTimeout(stream_id, timeout_s) from None

    async def _admit_loop(self, aggregate: Aggregate[Any, Any, Any], stream_id: str) -> Actor:
        actors = self._actors
        while True:
            if self._closed:
                self._check_accepting()
                raise RuntimeClosed("the runtime is shutting down; the command was not accepted")
            actor = actors.get(stream_id)
            if actor is None:
                if await self._wait_for_restart(stream_id) or stream_id in actors:
                    continue
                await self._activate(aggregate, stream_id)
                continue
            if actor.aggregate is not aggregate:
                raise ValueError(
                    f"stream {stream_id!r} is live for another Aggregate object named "
                    f"{actor.aggregate.name!r}; aggregate names must be unique in a runtime"
                )
            if actor.ready is not None:
                await actor.ready.wait()
                continue
            waiting = actor.waiting
            if actor.broken is not None:
                waiting = actor.waits()
                if waiting.settled is None:
                    waiting.settled = anyio.Event()
                await waiting.settled.wait()
                continue
            if actor.in_flight < self._mailbox_bound and (waiting is None or not waiting.mailbox):
                actor.in_flight += 1
                self._in_flight += 1
            else:
                entry: list[Any] = [anyio.Event(), False]
                mailbox = actor.waits().mailbox
                mailbox.append(entry)
                try:
                    await entry[0].wait()
                except BaseException:
                    if entry[1]:
                        self._release(actor)  # a slot was handed over: give it back
                    elif entry in mailbox:
                        mailbox.remove(entry)
                    raise
                if not entry[1]:
                    continue  # woken without a slot: the actor broke or the runtime closes
            actor.tick = self._tick
            actors[stream_id] = actors.pop(stream_id)
            return actor

    async def _wait_for_restart(self, stream_id: str) -> bool:
        """Fail fast for a stopped entity; sleep out a restart backoff (then answer True)."""
        supervised = self._supervised.get(stream_id)
        if supervised is None:
            return False
        now = self._clock.now()
        if supervised.stopped:
            if now < supervised.stopped_until:
                until = None if supervised.stopped_until == math.inf else supervised.stopped_until
                raise EntityStopped(stream_id, supervised.last_failure, until)
            supervised.stopped = False  # the cool-down is over: start afresh
            supervised.crash_times = ()
            return False
        if now < supervised.restart_at:
            await self._clock.sleep(supervised.restart_at - now)
            return True
        return False

    async def _activate(self, aggregate: Aggregate[Any, Any, Any], stream_id: str) -> None:
        actor = Actor(stream_id, aggregate, self._tick)
        self._actors[stream_id] = actor
        ready = actor.ready
        assert ready is not None
        try:
            state, version, snapshot_version = await rebuild(self._journal, aggregate, stream_id)
        except BaseException as error:
            actor.broken = error
            if self._actors.get(stream_id) is actor:
                del self._actors[stream_id]
            if isinstance(error, Exception) and not isinstance(error, JournalError):
                self._supervise(stream_id, aggregate.name, 0, error)
            raise
        finally:
            actor.ready = None
            ready.set()
        actor.state = state
        actor.version = actor.durable = version
        actor.snapshot_at = snapshot_version
        self._counters.activations += 1
        supervised = self._supervised.get(stream_id)
        kind: LifecycleKind = "recovered" if version else "started"
        if supervised is not None and supervised.restart_pending:
            supervised.restart_pending = False
            self._counters.restarts += 1
            kind = "restarted"
        self._notify(kind, aggregate.name, stream_id, version)
        if self._max_live_actors is not None and len(self._actors) > self._max_live_actors:
            self._evict_least_recently_used(len(self._actors) - self._max_live_actors, actor)

    # -- execution ---------------------------------------------------------------------------

    async def _execute(self, actor: Actor, command: Any) -> CommandResult[Any]:
        """Decide and append; the caller holds one of the actor's mailbox slots."""
        aggregate = actor.aggregate
        state0 = actor.state
        version0 = actor.version
        try:
            events = aggregate.decide(state0, command)
            if events:
                new_events = aggregate.to_new_events(events)
                state = state0
                evolve = aggregate.evolve
                for event in events:
                    state = evolve(state, event)
        except CommandRejected:
            self._counters.rejections += 1
            await self._answer_in_order(actor, version0)
            raise
        except Exception as error:
            self._crash(actor, error)
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
        try:
            result = await self._journal.append(
                actor.stream_id, new_events, expected_version=version0
            )
        except BaseException as error:
            self._append_failed(actor, error, (state0, version0, snapshot_at), (state, version))
            raise
        if result.version > actor.durable:
            actor.durable = result.version
        self._release(actor)
        self._counters.commands += 1
        if snapshot:
            self._queue_snapshot(actor, version, state)
        return CommandResult(result.version, result.position, tuple(events))

    async def _answer_in_order(self, actor: Actor, version: int) -> None:
        """Hold an answer until the events decided before it are durable; free the slot."""
        try:
            if actor.durable < version:
                entry: list[Any] = [version, anyio.Event(), None]
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

    def _release(self, actor: Actor) -> None:
        """Free a mailbox slot (handing it to the first waiting caller) and wake answers."""
        waiting = actor.waiting
        if waiting is not None:
            if waiting.drains:
                durable = actor.durable
                for entry in waiting.drains:
                    if entry[0] <= durable:
                        entry[1].set()
            if waiting.mailbox and actor.broken is None and not self._closed:
                handed = waiting.mailbox.popleft()
                handed[1] = True
                handed[0].set()
                return
        actor.in_flight -= 1
        self._in_flight -= 1
        if actor.broken is not None and actor.in_flight == 0:
            self._retire(actor)
        if self._drained is not None and self._in_flight == 0:
            self._drained.set()

    def _append_failed(
        self,
        actor: Actor,
        error: BaseException,
        before: tuple[Any, int, int],
        after: tuple[Any, int],
    ) -> None:
        state, version = after
        if (
            isinstance(error, ValueError)
            and actor.broken is None
            and actor.version == version
            and actor.state is state
        ):
            # Refused before it took its place in the log, and nothing was decided since:
            # the actor goes back to the state before this command.
            actor.state, actor.version, actor.snapshot_at = before
            self._release(actor)
            return
        version0 = before[1]
        if isinstance(error, anyio.get_cancelled_exc_class()):
            failure: BaseException = ActorRuntimeError(
                f"an earlier command of {actor.stream_id!r} was cancelled while its events were "
                f"being appended, so its outcome is unknown; this answer depended on it. The "
                f"entity is rebuilt from the journal; check its state and retry"
            )
        else:
            failure = error
        if actor.waiting is not None:
            for entry in actor.waiting.drains:
                if entry[0] > version0 and entry[2] is None:
                    entry[2] = failure
                    entry[1].set()
        self._break(actor, error)
        self._release(actor)

    def _crash(self, actor: Actor, error: Exception) -> None:
        self._supervise(actor.stream_id, actor.aggregate.name, actor.version, error)
        self._break(actor, error)
        self._release(actor)

    def _supervise(self, stream_id: str, aggregate: str, version: int, error: Exception) -> None:
        self._counters.crashes += 1
        now = self._clock.now()
        supervised = self._supervised.get(stream_id)
        decision = decide_after_crash(
            self._policy, supervised.crash_times if supervised else (), now
        )
        if supervised is None:
            supervised = self._supervised[stream_id] = Supervised((), 0.0, False, 0.0, error)
        supervised.record(decision, error)
        self._notify("crashed", aggregate, stream_id, version, error)
        if decision.stop:
            self._notify("stopped", aggregate, stream_id, version, error)

    def _break(self, actor: Actor, error: BaseException) -> None:
        """Discard the actor's state; it is rebuilt from the journal once nothing is in flight."""
        if actor.broken is None:
            actor.broken = error
        actor.state = None
        waiting = actor.waiting
        if waiting is not None and waiting.mailbox:
            for entry in waiting.mailbox:
                entry[0].set()
            waiting.mailbox.clear()

    def _retire(self, actor: Actor) -> None:
        if self._actors.get(actor.stream_id) is actor:
            del self._actors[actor.stream_id]
        waiting = actor.waiting
        if waiting is not None and waiting.settled is not None:
            waiting.settled.set()

    # -- tell, snapshots, passivation ---------------------------------------------------------

    async def _run_told(
        self,
        aggregate: Aggregate[Any, Any, Any],
        entity_id: str,
        command: Any,
        timeout_s: float | None,
        *,
        task_status: TaskStatus[None],
    ) -> None:
        actor = await self._admit(aggregate, aggregate._stream_prefix + entity_id, timeout_s)
        # started() does not yield: the command is decided and placed in the log before the
        # teller resumes, so commands told one after another keep their order.
        task_status.started()
        try:
            await self._execute(actor, command)
        except CommandRejected as rejection:
            logger.debug("told command to %r rejected: %s", actor.stream_id, rejection)
        except Exception:
            logger.warning("told command to %r failed", actor.stream_id, exc_info=True)

    async def _deliver_outbox(self, receive: Any, done: anyio.Event) -> None:
        try:
            async with receive:
                async for aggregate, entity_id, command in receive:
                    try:
                        await self._tell_internal(aggregate, entity_id, command)
                    except ActorRuntimeError:
                        logger.warning(
                            "queued command to %r not delivered", entity_id, exc_info=True
                        )
        finally:
            done.set()

    async def _tell_internal(self, aggregate: Any, entity_id: str, command: Any) -> None:
        assert self._task_group is not None
        await self._task_group.start(self._run_told, aggregate, entity_id, command, None)

    def _queue_snapshot(self, actor: Actor, version: int, state: Any) -> None:
        aggregate = actor.aggregate
        try:
            data = aggregate.encode_state(state)
        except Exception:
            logger.exception("encode_state failed for %r; no snapshot taken", actor.stream_id)
            return
        metadata = {
            SNAPSHOT_AGGREGATE_KEY: aggregate.name,
            SNAPSHOT_SCHEMA_KEY: aggregate.snapshot_schema,
        }
        try:
            self._snapshot_send.send_nowait((actor.stream_id, version, data, metadata))
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            self._counters.snapshots_skipped += 1

    async def _write_snapshots(self, receive: Any, done: anyio.Event) -> None:
        try:
            async with receive:
                async for stream_id, version, data, metadata in receive:
                    try:
                        await self._journal.save_snapshot(stream_id, version, data, metadata)
                    except (JournalError, ValueError):
                        self._counters.snapshots_skipped += 1
                        logger.warning("snapshot of %r not stored", stream_id, exc_info=True)
                    else:
                        self._counters.snapshots += 1
        finally:
            done.set()

    async def _sweep(self, idle_s: float) -> None:
        """Passivate actors idle for ``idle_s``; forget crash history older than the period."""
        interval = idle_s / _SWEEPS_PER_IDLE_PERIOD
        while True:
            await self._clock.sleep(interval)
            self._tick += 1
            limit = self._tick - _SWEEPS_PER_IDLE_PERIOD
            idle: list[Actor] = []
            for actor in self._actors.values():
                if actor.tick > limit:
                    break  # admission order: every later actor was used more recently
                if actor.is_idle():
                    idle.append(actor)
            for actor in idle:
                self._passivate(actor)
            now = self._clock.now()
            period = self._policy.period_s
            forgotten = [
                stream_id
                for stream_id, supervised in self._supervised.items()
                if not supervised.stopped and all(now - t >= period for t in supervised.crash_times)
            ]
            for stream_id in forgotten:
                del self._supervised[stream_id]

    def _evict_least_recently_used(self, count: int, keep: Actor) -> None:
        victims: list[Actor] = []
        for actor in self._actors.values():
            if len(victims) == count:
                break
            if actor is not keep and actor.is_idle():
                victims.append(actor)
        for actor in victims:
            self._passivate(actor)

    def _passivate(self, actor: Actor) -> None:
        del self._actors[actor.stream_id]
        self._counters.passivations += 1
        if self._snapshot_on_passivation and actor.version > actor.snapshot_at:
            self._queue_snapshot(actor, actor.version, actor.state)
        self._notify("passivated", actor.aggregate.name, actor.stream_id, actor.version)

    def _notify(
        self,
        kind: LifecycleKind,
        aggregate: str,
        stream_id: str,
        version: int,
        error: BaseException | None = None,
    ) -> None:
        observer = self._on_lifecycle
        if observer is None:
            return
        try:
            observer(LifecycleEvent(kind, aggregate, stream_id, version, error))
        except Exception:
            logger.exception("on_lifecycle observer failed on %r for %r", kind, stream_id)
