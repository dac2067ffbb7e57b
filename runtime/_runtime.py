"""The Runtime: its public calls and its lifecycle (start, shutdown).

The engine under it (``_engine``) finds or wakes an entity's actor and runs commands against
it; told commands and the outbox's deliverer are in ``_told``, the keeper that hosts the
runtime's own tasks in ``_keeper``, the snapshot writer and the idle sweeper in
``_passivation``, the keeper of callers' deadlines in ``_deadlines``, the sampler of the rate
of commands in ``_rate``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import anyio
from anyio.abc import TaskGroup

from journals import Journal

from ._actor import Parking
from ._aggregate import Aggregate, stream_id_error
from ._clock import Clock, check_clock
from ._engine import SHUT_DOWN
from ._entering_task import check_leaving_task, entering_task
from ._exceptions import EntityStopped, MailboxFull, MailboxTimeout
from ._keeper import Keeper
from ._leaving import only_the_bodys
from ._past import check_past, owned_journal_not_open, past_state
from ._settings import check_bound, check_seconds, check_switch, check_timeout
from ._statistics import statistics_of, uptime_of
from ._supervision import RestartPolicy, check_policy
from ._told import other_thread, refused_stream_id, stopped
from ._types import CommandResult, LifecycleEvent, RuntimeStatistics
from ._views import Decider, StatesOf

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")


def _not_a_journal(journal: object) -> str:
    if isinstance(journal, str | os.PathLike):
        return (
            f"Runtime takes an open journal, not a path ({journal!r}): "
            f"'async with FileJournal(path) as journal, Runtime(journal) as runtime:'"
        )
    return (
        f"Runtime takes a journal (MemoryJournal() or FileJournal(path)), "
        f"not {type(journal).__name__}"
    )


class Runtime(Keeper):
    """Runs commands against entities, one lightweight actor per live entity.

    ::

        async with MemoryJournal() as journal, Runtime(journal) as runtime:
            result = await runtime.ask(account, "42", Deposit(100))

    ``ask`` runs in the caller's task: it finds or activates the entity's actor, decides the
    command against the state in memory, and appends the events; it answers once they are
    durable. Commands to one entity are decided one after another; while earlier events wait
    for the journal's group commit the next commands are already decided (pipelining), and
    answers are released in order. At most ``mailbox_bound`` calls per entity are accepted
    and unanswered; further callers wait (``ask``, ``tell``, ``state``) or are refused
    (``tell_nowait``). Each command and each ``state()`` read holds a slot from its
    acceptance to its answer (a ``tell_nowait`` command from its delivery out of the
    outbox), and a command whose caller was cancelled while its events were being appended
    holds it until that append's outcome is known.

    Settings: ``max_live_actors`` evicts the least recently used idle actors beyond that
    number; ``passivate_after_s`` evicts actors idle for that long (checked by one sweeper,
    up to 25 % later); ``snapshot_on_passivation`` stores a snapshot of an evicted actor whose
    state is newer than its last snapshot; ``restart_policy`` governs crashes;
    ``on_lifecycle``, a plain function (an async one is refused with TypeError), is called
    with a ``LifecycleEvent`` for every lifecycle change;
    ``shutdown_timeout_s`` bounds how long leaving the context waits for commands in flight
    and snapshots; ``outbox_bound`` bounds the commands ``tell_nowait`` queued and not yet
    delivered, ``snapshot_queue_bound`` the snapshots taken and not yet written. Bounds are
    whole numbers of at least 1, the two durations numbers of seconds (``passivate_after_s``
    above 0, ``shutdown_timeout_s`` at least 0), and ``snapshot_on_passivation`` and
    ``owns_journal`` take only True or False; other values raise ValueError. A
    ``restart_policy`` that is no ``RestartPolicy``, or a ``clock`` without ``now()`` and
    ``sleep()`` (or a clock's class), raises TypeError.

    The journal belongs to the caller and stays open (it must be open when the runtime starts:
    one that is not is refused with ``JournalClosed``), unless ``owns_journal=True``: then the
    runtime opens it on start (an error opening it comes out of ``async with`` as itself) and
    closes it on exit, after its shutdown and before ``async with`` is left. Like the
    runtime's own tasks, an owned journal outlives a cancellation of the scope around
    ``async with`` until then. Closing flushes what was appended and waits for writes in
    progress, which a disk that stalls can hold up beyond ``shutdown_timeout_s``.
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
        if not isinstance(journal, Journal):
            raise TypeError(_not_a_journal(journal))
        if restart_policy is not None:
            check_policy(restart_policy)
        if clock is not None:
            check_clock(clock)
        super().__init__(
            journal,
            mailbox_bound=mailbox_bound,
            max_live_actors=max_live_actors,
            snapshot_on_passivation=check_switch(
                "snapshot_on_passivation", snapshot_on_passivation
            ),
            restart_policy=restart_policy,
            clock=clock,
            on_lifecycle=on_lifecycle,
        )
        if passivate_after_s is not None:
            check_seconds("passivate_after_s", passivate_after_s, above_zero=True, or_none=True)
        check_seconds("shutdown_timeout_s", shutdown_timeout_s, above_zero=False)
        outbox_bound = check_bound("outbox_bound", outbox_bound)
        snapshot_queue_bound = check_bound("snapshot_queue_bound", snapshot_queue_bound)
        self._passivate_after_s = passivate_after_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._owns_journal = check_switch("owns_journal", owns_journal)
        self._owned_journal_open = False  # From the keeper's open to its close.
        self._outbox_bound = outbox_bound
        self._snapshot_queue_bound = snapshot_queue_bound
        self._started_at: float | None = None  # Once the runtime has started.
        self._outbox_send: Any = None
        self._outbox_queued = 0  # Accepted by tell_nowait, delivery not ended (see _told).
        self._told_in_flight = 0  # Told commands accepted and not finished.
        self._workers_done: list[anyio.Event] = []
        self._outer: TaskGroup | None = None  # Hosts the keeper of the runtime's own tasks.
        self._keeper_scope: anyio.CancelScope | None = None
        self._entered = False
        self._entered_in: anyio.TaskInfo | None = None  # The task that may leave it.
        self._stopped_at: float | None = None
        self._thread = 0  # The event loop's thread, where tell_nowait may be called.

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Runtime can be entered only once; create a new one")
        self._entered = True
        self._entered_in = entering_task()
        # Read once before anything is entered: a clock whose now() raises fails here, not
        # after the runtime's task group is entered, which would then stay entered.
        self._clock.now()
        self._thread = threading.get_ident()
        self._parking = Parking()
        outbox_send, outbox_receive = anyio.create_memory_object_stream[tuple[Any, str, Any]](
            self._outbox_bound
        )
        snapshot_send, snapshot_receive = anyio.create_memory_object_stream[
            tuple[str, int, Any, dict[str, Any]]
        ](self._snapshot_queue_bound)
        self._outbox_send, self._snapshot_send = outbox_send, snapshot_send
        self._workers_done = [anyio.Event(), anyio.Event()]
        # Entered in the caller's task: the body of ``async with`` runs in its cancel scope
        # (a failure of the runtime's tasks cancels the body), which is not shielded.
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        # The keeper starts once it has opened an owned journal; shielded, so that a caller
        # cancelled as it enters does not leave a task group half entered (the body's first
        # checkpoint is cancelled).
        try:
            with anyio.CancelScope(shield=True):
                await outer.start(self._keep, outbox_receive, snapshot_receive)
        except BaseException:
            # The keeper ended before it started the runtime's tasks (the journal could not
            # be opened: JournalCorrupted, JournalLocked, ...), and its error comes out of
            # ``async with`` as itself: the task group, empty, is left without it, so that
            # it does not wrap it in an exception group.
            self._outer = None
            for stream in (outbox_send, outbox_receive, snapshot_send, snapshot_receive):
                stream.close()
            await outer.__aexit__(None, None, None)
            raise
        self._closed = False
        try:
            self._started_at = self._clock.now()
        except BaseException as error:  # The clock failed since it was read above.
            await self.__aexit__(type(error), error, error.__traceback__)  # Leaves the group.
            raise
        self._accepting = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        outer = self._outer
        if outer is None or self._closed:
            return None
        check_leaving_task(self._entered_in)  # Before anything changes: it keeps running.
        clock_error = None
        try:
            self._stopped_at = self._clock.now()
        except Exception as error:  # Raised once shut down: the task group must be left.
            clock_error = error
        self._refusal = SHUT_DOWN
        self._accepting = False
        for supervised in self._supervised.values():
            self._end_backoff(supervised)  # Their callers fail now (_wait_for_restart).
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
            self._report_undelivered()
            self._close_mailboxes()
            self._snapshot_send.close()
            self._report_unwritten_snapshots()
            # The runtime's own tasks end here, and only here (or when one of them fails):
            # never at once with a cancellation of the scope around ``async with``.
            if self._keeper_scope is not None:
                self._keeper_scope.cancel()
            outer.cancel_scope.cancel()
            suppress: bool | None
            try:
                try:
                    suppress = await outer.__aexit__(exc_type, exc, traceback)
                except BaseExceptionGroup as group:
                    # The runtime's own tasks do not fail, so a group holds the exception
                    # of the body of ``async with``: that one propagates, as it would
                    # without the runtime (returning None re-raises it unchanged).
                    if exc is None or not only_the_bodys(group, exc):
                        raise
                    suppress = None
            finally:
                # No task may be started any more (a cancelled caller's abandoned append
                # is then settled without one).
                self._task_group = None
                self._outer = None
                # No actor is live any more (an ask still in flight keeps its own); the
                # counters stay for statistics(). An owned journal is closed by now: the
                # keeper closed it before it ended.
                self._actors.clear()
                self._busy.clear()
        if clock_error is not None:
            if exc is None:
                raise clock_error
            exc.add_note(f"the runtime's clock failed too as it shut down: {clock_error!r}")
        return suppress

    def _close_mailboxes(self) -> None:
        """Stop accepting; wake callers waiting for room or sleeping out a restart backoff
        so that they fail with RuntimeClosed."""
        self._closed = True
        for supervised in self._supervised.values():
            self._end_backoff(supervised)
        for actor in self._actors.values():
            self._wake_waiting_for_room(actor)

    # -- commands ----------------------------------------------------------------------------

    def ask(
        self,
        aggregate: Decider[C, E],
        entity_id: str,
        command: C,
        *,
        timeout_s: float | None = None,
    ) -> Coroutine[Any, Any, CommandResult[E]]:
        """Run ``command`` against entity ``entity_id``; answer once its events are durable.

        Use it as ``await runtime.ask(...)``; nothing happens until it is awaited. Raises
        ``CommandRejected`` (the domain said no; nothing written), the exception of a
        crash in ``decide``/``evolve`` (the actor restarts), a journal error (the events are
        not acknowledged; the actor is rebuilt from what is durable), ``MailboxTimeout`` when
        the command was not accepted within ``timeout_s`` (it was not executed),
        ``EntityStopped`` and ``RuntimeClosed``. ``timeout_s`` is a number of seconds of at
        least 0 (0: no wait; ``math.inf``: no limit, as None); anything else, NaN included,
        raises ValueError at once.

        ``aggregate`` is an ``Aggregate``, typed by its ``decide`` alone: the answer, a
        ``CommandResult`` of its events, passes where a wider one is expected.
        """
        if timeout_s is not None:
            check_timeout(timeout_s)  # Here, not where it is used: also when there is room.
        try:
            stream_id = aggregate._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(aggregate, entity_id) from None
        # The engine's coroutine itself, not one wrapping it: a coroutine less per command
        # in flight (fewer objects for the cyclic GC while thousands wait for durability).
        # Typing only: what has an Aggregate's _stream_prefix is an Aggregate (see _views);
        # a cast would be one more call per command.
        return self._execute(aggregate, stream_id, command, timeout_s)  # type: ignore[arg-type]

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
        outcome is not reported to the caller but logged: rejections are counted in
        ``statistics().rejections``, events the journal did not take in ``append_failures``,
        crashes in ``crashes`` and also reported to ``on_lifecycle``. Commands told one after
        another by one task are decided in that order.
        """
        if timeout_s is not None:
            check_timeout(timeout_s)
        self._check_accepting()
        try:
            aggregate._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(aggregate, entity_id) from None
        task_group = self._task_group
        if task_group is None:
            raise stopped()
        try:
            await task_group.start(self._run_told, aggregate, entity_id, command, timeout_s)
        except (MailboxTimeout, EntityStopped) as refusal:
            self._refused(refusal)
            raise

    def tell_nowait(self, aggregate: Aggregate[S, C, E], entity_id: str, command: C) -> None:
        """Send ``command`` from synchronous code; raise ``MailboxFull`` instead of waiting.

        The command is queued in the runtime's outbox (``outbox_bound``) and delivered in
        order by one task, as ``tell`` would; it raises ``MailboxFull`` when the entity's
        mailbox or the outbox is full. An entity whose mailbox stays full delays the delivery
        of the commands queued after it. ``statistics().outbox_depth`` counts the commands
        queued and not delivered yet; one refused at delivery (``EntityStopped``, a failed
        activation, ...) or left queued by shutdown is not executed: it is logged and counted
        in ``statistics().outbox_undelivered``. An entity id that is no ``str``, or that makes
        a stream id no journal takes (too long, not UTF-8), is refused at the call
        (``TypeError``, ``InvalidStreamId``).

        Call it in the event loop's thread; from another thread it raises RuntimeError (use
        ``anyio.from_thread.run_sync(runtime.tell_nowait, ...)`` there).
        """
        self._check_accepting()
        if threading.get_ident() != self._thread:
            raise other_thread()
        try:
            stream_id = aggregate._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(aggregate, entity_id) from None
        actor = self._actors.get(stream_id)
        if actor is not None:
            if actor.in_flight >= self._mailbox_bound:
                self._counters.mailbox_full_refusals += 1
                raise MailboxFull(stream_id, self._mailbox_bound)
        elif (invalid := refused_stream_id(stream_id)) is not None:
            raise invalid  # Refused at delivery, it would be logged, not raised to the caller.
        try:
            self._outbox_send.send_nowait((aggregate, entity_id, command))
        except anyio.WouldBlock:
            self._counters.outbox_full_refusals += 1
            raise MailboxFull(stream_id, self._outbox_bound, outbox=True) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise stopped() from None  # its deliverer ended with the runtime's tasks
        self._outbox_queued += 1

    async def state(
        self, aggregate: StatesOf[S], entity_id: str, *, timeout_s: float | None = None
    ) -> S:
        """The entity's current state, once every event it includes is durable.

        Takes a mailbox slot until it answers, as a command does; ``timeout_s`` bounds the
        wait for the actor (room, activation, a restart's backoff) as for ``ask``, with
        ``MailboxTimeout``. Raises ``EntityStopped`` and ``RuntimeClosed`` as ``ask`` does,
        and the journal's error when an event in the state is not made durable.
        It is the actor's own object, not a copy: with an ``evolve`` that changes the state
        in place, commands decided after this read change it too (with events that may not
        be durable yet, even before this call returns). Copy it before the next ``await`` if
        you keep it, and never change it.
        """
        typed = cast("Aggregate[S, Any, Any]", aggregate)
        if timeout_s is not None:
            check_timeout(timeout_s)
        self._check_accepting()
        try:
            stream_id = typed._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(typed, entity_id) from None
        try:
            actor = await self._admit(typed, stream_id, timeout_s)
        except (MailboxTimeout, EntityStopped) as refusal:
            self._refused(refusal)
            raise
        state: S = actor.state
        if actor.durable >= actor.version:
            self._release(actor)  # Nothing decided is waiting for durability: answer now.
        else:
            await self._answer_in_order(actor, actor.version)
        return state

    async def state_at(
        self,
        aggregate: StatesOf[S],
        entity_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> S:
        """Rebuild a past state from the journal, leaving the live actor alone.

        ``version=N``: the state after the entity's first N events (uses a snapshot at or
        below N when there is one and the runtime takes the aggregate's snapshots, as
        activation does); ``VersionNotReached`` (a ``ValueError``) when the entity
        has fewer durable events than N (before any event is folded). ``at=datetime``
        (timezone-aware): the state after the events recorded at or before that moment, up to
        the first one recorded after it (the journal's wall clock stamps events, and can step
        back); a naive datetime is refused with a ``ValueError``, anything but a datetime (a
        ``date``, a string) with a ``TypeError``. See "Past states" in docs/runtime.md.

        It reads the journal, not the actors, so it works before the runtime is entered and
        after it is left while the journal is open; a journal the runtime owns
        (``owns_journal=True``) is open only in between, and ``RuntimeClosed`` says so.
        """
        typed = cast("Aggregate[S, Any, Any]", aggregate)
        check_past(version, at)
        if self._owns_journal and not self._owned_journal_open:
            raise owned_journal_not_open()  # also for version=0, which folds nothing
        try:
            stream_id = typed._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(typed, entity_id) from None
        result: S = await past_state(
            self._journal,
            typed,
            stream_id,
            version,
            at,
            owns_journal=self._owns_journal,
            use_snapshots=self._uses_snapshots(typed),
            repeats=self._repeats,
        )
        return result

    def reset(self, aggregate: Aggregate[Any, Any, Any], entity_id: str) -> None:
        """Forget the entity's crash history, releasing a stopped entity.

        Observers get a ``reset`` notice when a stopped entity is released (an entity whose
        cool-down has ended is not stopped any more); forgetting the crashes of one that was
        not stopped changes only its next activation, which is then not a restart, and ends
        its restart backoff: callers waiting it out go on at once.
        """
        try:
            stream_id = aggregate._stream_prefix + entity_id
        except (TypeError, AttributeError):
            raise stream_id_error(aggregate, entity_id) from None
        supervised = self._supervised.pop(stream_id, None)
        self._stopped.pop(stream_id, None)
        if supervised is None:
            return
        self._end_backoff(supervised)
        if supervised.is_stopped(self._clock.now()):
            version, failure = supervised.version, supervised.last_failure
            self._notify("reset", aggregate.name, stream_id, version, failure)

    def statistics(self) -> RuntimeStatistics:
        """A frozen record of the runtime's counters and of its live actors now.

        Its cost follows the load, not the number of live actors: it looks at the actors with
        commands in flight and at the callers waiting on them, never at the idle ones, and
        counts the stopped entities without looking at every entity that crashed. It may be
        called from another thread (a metrics exporter's): it then changes nothing, and its
        figures are read while the event loop changes them.
        """
        now = self._clock.now()
        in_loop = not self._thread or threading.get_ident() == self._thread
        commands = self._counters.commands
        running_since = self._started_at if self._outer is not None else None
        if in_loop and running_since is not None:
            self._rate.note(now, commands)  # A sample as good as the sampler's.
        return statistics_of(
            self._counters,
            live_actors=len(self._actors),
            busy=tuple(self._busy),  # Copied in one C call: another thread may be reading.
            stopped_entities=self._stopped_now(now, prune=in_loop),
            commands_in_flight=self._in_flight,
            waiting_for_restart=self._waiting_for_restart,
            waiting_for_journal=self._waiting_for_journal,
            appends_waiting_for_journal=self._appends_waiting_for_journal,
            outbox_depth=self._outbox_queued,
            uptime_s=uptime_of(self._started_at, self._stopped_at, now),
            recent_per_s=self._rate.per_s(running_since, now, commands),
            journal=self._journal.statistics(),
        )
