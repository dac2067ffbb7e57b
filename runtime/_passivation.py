"""Passivation and the snapshot queue: evicting idle actors (by the live-actor bound, and by
idle time: the idle sweeper), and the snapshots taken as they go or as they fall due, written
one after another by one task.

Invariant: ``_snapshots_queued`` maps a stream to the highest version of its snapshots
queued, until the writer has tried that one. An entity whose activation begins meanwhile counts
that snapshot as its last one (the journal may not hold it when the activation looks):
evicted again unchanged, it takes no other, and its next one is due a whole period after
it. The map holds at most ``snapshot_queue_bound`` streams.

Invariant (with ``max_live_actors`` set): a live actor is idle only if it went idle within
the bound after the last eviction that looked at every live actor (``_idle_kept`` counts the
actors that went idle and stayed live; ``_all_busy_at`` is its value when that eviction
ended), or if its activation has just ended and its first command is being admitted (or the
runtime is closing: then it stays until the runtime drops every actor at its exit). For an
actor that goes idle beyond the bound is evicted at once, and the eviction that looked at
every actor left none idle. So while the two are equal, there is no idle actor to look for.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import anyio

from journals import Journal, JournalFailed

from ._actor import Actor, logger
from ._repeats import IN_THE_NEXT_MINUTE, since_last
from ._snapshots import SnapshotEncoder
from ._supervision import Supervisor

_SWEEPS_PER_IDLE_PERIOD = 4
"""Sweeps of the idle sweeper per idle period (``passivate_after_s``)."""


class Passivation(Supervisor):
    """The engine's eviction of idle actors and its snapshot queue (a part of ``Engine``,
    which sets these attributes)."""

    _journal: Journal
    _actors: dict[str, Actor]
    _max_live_actors: int | None
    _snapshot_on_passivation: bool
    _snapshot_send: Any
    _snapshot_encoder: SnapshotEncoder
    _snapshots_queued: dict[str, int]
    _tick: int
    _idle_kept: int
    _all_busy_at: int

    def _encode_snapshot(self, actor: Actor, state: Any) -> tuple[Any, dict[str, Any]] | None:
        """A snapshot's data and metadata (see ``SnapshotEncoder``), or None: not taken."""
        encoded = self._snapshot_encoder.encode(actor.aggregate, actor.stream_id, state)
        if encoded is None:
            self._counters.snapshots_skipped += 1
        return encoded

    def _queue_snapshot(
        self, actor: Actor, version: int, encoded: tuple[Any, dict[str, Any]]
    ) -> bool:
        """Queue the snapshot ``encoded`` at ``version``; answer whether it was queued."""
        try:
            self._snapshot_send.send_nowait((actor.stream_id, version, *encoded))
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            # Full, closed by shutdown, or its writer ended with the runtime's tasks (a
            # command asked from outside ``async with`` may still be answered then).
            self._counters.snapshots_skipped += 1
            return False
        # Commands answered out of order queue their snapshots out of order: keep the latest.
        queued = self._snapshots_queued
        if version > queued.get(actor.stream_id, 0):
            queued[actor.stream_id] = version
        return True

    async def _write_snapshots(self, receive: Any, done: anyio.Event) -> None:
        queued = self._snapshots_queued
        try:
            async with receive:
                async for stream_id, version, data, metadata in receive:
                    try:
                        await self._journal.save_snapshot(stream_id, version, data, metadata)
                    except Exception as error:  # an optimisation: log, count, go on
                        self._counters.snapshots_skipped += 1
                        self._log_snapshot_not_stored(stream_id, error)
                    else:
                        self._counters.snapshots += 1
                    finally:
                        if queued.get(stream_id) == version:
                            del queued[stream_id]
        finally:
            done.set()

    def _log_snapshot_not_stored(self, stream_id: str, error: Exception) -> None:
        """Log a snapshot the journal did not store: with its traceback once a minute for its
        class of exception (a failed journal fails every later one), at debug level otherwise
        (see ``_repeats``)."""
        since = self._repeats.due("snapshot not stored", error)
        if since is None:
            logger.debug(
                "snapshot of %r not stored: %s: %.300s", stream_id, type(error).__name__, error
            )
            return
        failed = isinstance(error, JournalFailed)
        logger.log(
            logging.ERROR if failed else logging.WARNING,
            "snapshot of %r not stored%s; no event is lost: the entity is rebuilt from an "
            "earlier snapshot or from its events. Later snapshots not stored with %s %s are "
            "logged at debug level, without a traceback (statistics().snapshots_skipped "
            "counts them)%s.",
            stream_id,
            ": the journal failed and accepts no more writes (fail-stop)" if failed else "",
            type(error).__name__,
            IN_THE_NEXT_MINUTE,
            since_last(since),
            exc_info=error,
        )

    def _evict_if_beyond_bound(self, actor: Actor) -> None:
        """Evict ``actor``, idle now, if the live actors are beyond ``max_live_actors``.

        Eviction on activation takes idle actors only: a burst of activations leaves busy
        actors beyond the bound, and each is evicted as it goes idle. The others are busy
        then (an activation beyond the bound evicted every idle one), so the actor that goes
        idle is the least recently used idle one. One that stays live is counted (one integer
        addition, only under a bound): the next activation beyond the bound must look for it.
        """
        actors = self._actors
        if (
            len(actors) > cast(int, self._max_live_actors)
            and actors.get(actor.stream_id) is actor
            and actor.is_idle()
        ):
            self._passivate(actor)
        else:
            self._idle_kept += 1

    def _evict_least_recently_used(self, count: int, keep: Actor) -> None:
        """Evict up to ``count`` idle actors, least recently used first, other than ``keep``.

        An actor found busy is in use now: it moves behind the others, with the current tick,
        as an admission would move it (the order stays the order of use, which the idle
        sweeper relies on too), so the next activations do not look at it again before the
        actors that were behind it. Once an eviction has looked at every actor, the next ones
        look at none until an actor goes idle within the bound (see the module's invariant):
        a burst of activations while the live actors are busy looks at each of them once or
        twice in all, not once per activation.
        """
        if self._all_busy_at == self._idle_kept:
            return
        actors = self._actors
        victims: list[Actor] = []
        busy: list[Actor] = []
        for actor in actors.values():
            if actor is keep:
                continue
            if actor.is_idle():
                victims.append(actor)
                if len(victims) == count:
                    break
            else:
                busy.append(actor)
        else:
            self._all_busy_at = self._idle_kept  # every idle actor is among the victims
        tick = self._tick
        for actor in busy:
            actor.tick = tick
            actors[actor.stream_id] = actors.pop(actor.stream_id)
        for actor in victims:
            self._passivate(actor)

    def _passivate(self, actor: Actor) -> None:
        del self._actors[actor.stream_id]
        self._counters.passivations += 1
        if self._snapshot_on_passivation and actor.version > actor.snapshot_at:
            encoded = self._encode_snapshot(actor, actor.state)
            if encoded is not None:
                self._queue_snapshot(actor, actor.version, encoded)
        self._notify("passivated", actor.aggregate.name, actor.stream_id, actor.version)

    async def _sweep(self, idle_s: float) -> None:
        """Passivate actors idle for ``idle_s``; forget crash history older than the period."""
        interval = idle_s / _SWEEPS_PER_IDLE_PERIOD
        while True:
            await self._clock.sleep(interval)
            self._tick += 1
            # An actor used during tick T (at most one interval before the sweep that ends it)
            # has been idle a whole period only at the end of tick T + SWEEPS, that is once the
            # current tick is beyond T + SWEEPS: idle between 1 and 1.25 periods when evicted.
            limit = self._tick - _SWEEPS_PER_IDLE_PERIOD
            idle: list[Actor] = []
            for actor in self._actors.values():
                if actor.tick >= limit:
                    break  # admission order: every later actor was used more recently
                if actor.is_idle():
                    idle.append(actor)
            for actor in idle:
                self._passivate(actor)
            self._forget_old_crashes(self._clock.now())
