"""Settling an actor's commands: freeing mailbox slots (which hands them to waiting callers and
wakes answers held in order), and what a failed command or append leaves behind (the answers
that depended on it failed, the actor broken and rebuilt from the journal, a crash handed to
the supervisor). A part of ``Engine``, which sets these attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import anyio
from anyio.abc import TaskGroup

from journals import AppendOutcome

from ._abandoned import abandoned_after_shutdown, settle_abandoned_append
from ._actor import Actor, Parking
from ._passivation import Passivation

if TYPE_CHECKING:
    from ._engine import Engine


class Settling(Passivation):
    """How slots are freed and failures settled (a part of ``Engine``)."""

    _in_flight: int
    _busy: set[Actor]
    _closed: bool
    _drained: anyio.Event | None
    _parking: Parking
    _task_group: TaskGroup | None

    def _release(self, actor: Actor) -> None:
        """Free a mailbox slot (handing it to the first waiting caller) and wake answers."""
        waiting = actor.waiting
        if waiting is not None:
            if waiting.drains:
                durable = actor.durable
                for entry in waiting.drains:
                    if entry[0] <= durable:
                        entry[1].set()
            mailbox = waiting.mailbox
            while mailbox and mailbox[0][2]:
                mailbox.popleft()  # a caller whose deadline passed while it waited
            if mailbox and actor.broken is None and not self._closed:
                handed = mailbox.popleft()
                handed[1] = True
                self._parking.wake(handed[0])
                return
        actor.in_flight -= 1
        self._in_flight -= 1
        if actor.in_flight == 0:
            self._busy.discard(actor)  # Not there once the runtime has exited.
            if actor.broken is not None:
                self._retire(actor)
            else:
                if actor.tick != self._tick:
                    self._idle_since_now(actor)
                if waiting is not None and not waiting.mailbox:
                    # Idle again: drop the waiting parts so an idle actor stays small. (Every
                    # answer removes its drain entry before it frees its slot.)
                    actor.waiting = None
                if self._max_live_actors is not None:
                    self._evict_if_beyond_bound(actor)
        if self._drained is not None and self._in_flight == 0:
            self._drained.set()

    def _idle_since_now(self, actor: Actor) -> None:
        """Count the idleness of ``actor``, whose last command in flight was answered in a
        later tick than its last use, from now: it takes the current tick and moves to the end
        of the dictionary of actors (see the invariant in ``Engine``).

        Only a command held in flight across a sweep gets here: the tick changes only with the
        idle sweeper, so a runtime without one never does, nor does a hot actor's pipelined
        command (its actor is still busy), nor a command answered in the tick it came in.
        """
        actor.tick = self._tick
        actors = self._actors
        stream_id = actor.stream_id
        if actors.get(stream_id) is actor:  # Not there once the runtime has exited.
            actors[stream_id] = actors.pop(stream_id)

    def _append_refused(self, actor: Actor, error: BaseException, version0: int) -> None:
        """The append is not in the log and never will be: the journal refused it, or its
        caller took it back while it waited for room. Fail what was decided after it, and
        rebuild the actor from the journal once its commands in flight have settled.

        Rebuilt, not set back to the state before the command: ``evolve`` may have changed
        that state in place, and a state that holds events the journal has not got would
        decide the next commands. Only a refused command pays for the rebuild.
        """
        if isinstance(error, anyio.get_cancelled_exc_class()):
            # Taken back while it waited for room, when the actor decides nothing: no answer
            # depends on it (and a cancellation is only ever its caller's).
            self._break(actor, error)
        else:
            self._counters.append_failures += 1
            self._fail_from(actor, version0, error)
        self._release(actor)

    def _append_lost(
        self,
        actor: Actor,
        error: BaseException,
        version0: int,
        version: int,
        outcome: AppendOutcome | None = None,
    ) -> None:
        """An append failed (other than by being refused), or its caller stopped waiting.

        ``outcome``: the journal's outcome of the append, when it was started (placed for
        certain); None when it went through ``Journal.append``.
        """
        if not isinstance(error, anyio.get_cancelled_exc_class()):
            self._counters.append_failures += 1
            self._fail_from(actor, version0, error)
            self._release(actor)
            return
        # The caller went away; its append may not have (see settle_abandoned_append).
        if self._task_group is not None:
            self._task_group.start_soon(
                settle_abandoned_append, cast("Engine", self), actor, version0, version, outcome
            )
        else:
            abandoned_after_shutdown(cast("Engine", self), actor, version0)

    def _fail_from(self, actor: Actor, version0: int, error: BaseException) -> None:
        """Fail the answers that depend on versions after ``version0``; break the actor."""
        if actor.waiting is not None:
            for entry in actor.waiting.drains:
                if entry[0] > version0 and entry[2] is None:
                    entry[2] = error
                    entry[1].set()
        self._break(actor, error)

    def _crash(self, actor: Actor, error: Exception) -> None:
        """Supervise a crash in user code; break the actor and free its slot whatever happens
        (a slot kept would be lost for good: enough of them wedge the entity)."""
        try:
            self._supervise(actor.stream_id, actor.aggregate.name, actor.version, error)
        finally:
            self._break(actor, error)
            self._release(actor)

    def _break(self, actor: Actor, error: BaseException) -> None:
        """Discard the actor's state; it is rebuilt from the journal once nothing is in flight."""
        if actor.broken is None:
            actor.broken = error
        actor.state = None
        self._wake_waiting_for_room(actor)

    def _wake_waiting_for_room(self, actor: Actor) -> None:
        """Wake the callers waiting for room in the actor's mailbox, without a slot: each
        looks again at why (the actor broke, or the runtime closes)."""
        waiting = actor.waiting
        if waiting is not None and waiting.mailbox:
            wake = self._parking.wake
            for entry in waiting.mailbox:
                wake(entry[0])
            waiting.mailbox.clear()

    def _retire(self, actor: Actor) -> None:
        if self._actors.get(actor.stream_id) is actor:
            del self._actors[actor.stream_id]
        waiting = actor.waiting
        if waiting is not None and waiting.settled is not None:
            waiting.settled.set()
