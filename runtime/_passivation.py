"""Passivation and the snapshot queue: evicting idle actors, and the snapshots taken as they
go or as they fall due, written one after another by one task.

Invariant: ``_snapshots_queued`` maps a stream to the highest version of its snapshots
queued, until the writer has tried that one. An entity whose activation begins meanwhile counts
that snapshot as its last one (the journal may not hold it when the activation looks):
evicted again unchanged, it takes no other, and its next one is due a whole period after
it. The map holds at most ``snapshot_queue_bound`` streams.
"""

from __future__ import annotations

from typing import Any, cast

import anyio

from journals import Journal

from ._actor import Actor, logger
from ._snapshots import SnapshotEncoder
from ._supervision import Supervisor


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
                    except Exception:  # a snapshot is an optimisation: log, count, go on
                        self._counters.snapshots_skipped += 1
                        logger.warning("snapshot of %r not stored", stream_id, exc_info=True)
                    else:
                        self._counters.snapshots += 1
                    finally:
                        if queued.get(stream_id) == version:
                            del queued[stream_id]
        finally:
            done.set()

    def _evict_if_beyond_bound(self, actor: Actor) -> None:
        """Evict ``actor``, idle now, if the live actors are beyond ``max_live_actors``.

        Eviction on activation takes idle actors only: a burst of activations leaves busy
        actors beyond the bound, and each is evicted as it goes idle. The others are busy
        then (an activation beyond the bound evicted every idle one), so the actor that goes
        idle is the least recently used idle one.
        """
        actors = self._actors
        if (
            len(actors) > cast(int, self._max_live_actors)
            and actors.get(actor.stream_id) is actor
            and actor.is_idle()
        ):
            self._passivate(actor)

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
            encoded = self._encode_snapshot(actor, actor.state)
            if encoded is not None:
                self._queue_snapshot(actor, actor.version, encoded)
        self._notify("passivated", actor.aggregate.name, actor.stream_id, actor.version)
