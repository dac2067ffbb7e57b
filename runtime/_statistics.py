"""The runtime's counters and the frozen record ``Runtime.statistics()`` answers."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from journals import JournalStatistics

from ._actor import Actor
from ._types import RuntimeStatistics


@dataclass(slots=True)
class Counters:
    """Totals since the runtime started (plain ints: the hot path only adds to them)."""

    commands: int = 0
    rejections: int = 0
    append_failures: int = 0
    crashes: int = 0
    restarts: int = 0
    activations: int = 0
    passivations: int = 0
    snapshots: int = 0
    snapshots_skipped: int = 0
    outbox_undelivered: int = 0
    mailbox_timeouts: int = 0
    mailbox_full_refusals: int = 0
    outbox_full_refusals: int = 0
    entity_stopped_refusals: int = 0


def statistics_of(
    counters: Counters,
    *,
    live_actors: int,
    busy: Collection[Actor],
    stopped_entities: int,
    commands_in_flight: int,
    waiting_for_restart: int,
    waiting_for_journal: int,
    appends_waiting_for_journal: int,
    outbox_depth: int,
    uptime_s: float,
    recent_per_s: float,
    journal: JournalStatistics,
) -> RuntimeStatistics:
    """The record ``Runtime.statistics()`` answers. It looks at the ``busy`` actors (those
    with a slot taken) and at the callers waiting on them, never at the idle ones: its cost
    follows the load, not the number of live actors."""
    depth_max = waiting_for_room = 0
    for actor in busy:
        depth_max = max(depth_max, actor.in_flight)
        # Callers wait for room only on a full mailbox, hence on a busy actor. The mailbox is
        # copied in one C call: the event loop may change it while another thread reads.
        waiting = actor.waiting
        if waiting is not None:
            # Not expired, and not a command of the outbox (outbox_depth counts it).
            waiting_for_room += sum(
                1 for entry in tuple(waiting.mailbox) if not entry[2] and not entry[3]
            )
    return RuntimeStatistics(
        live_actors=live_actors,
        busy_actors=len(busy),
        commands_in_flight=commands_in_flight,
        mailbox_depth_max=depth_max,
        callers_waiting_for_room=waiting_for_room,
        commands=counters.commands,
        commands_per_s=counters.commands / uptime_s if uptime_s > 0 else 0.0,
        rejections=counters.rejections,
        append_failures=counters.append_failures,
        crashes=counters.crashes,
        restarts=counters.restarts,
        stopped_entities=stopped_entities,
        activations=counters.activations,
        passivations=counters.passivations,
        snapshots=counters.snapshots,
        snapshots_skipped=counters.snapshots_skipped,
        uptime_s=uptime_s,
        journal=journal,
        outbox_depth=outbox_depth,
        outbox_undelivered=counters.outbox_undelivered,
        mailbox_timeouts=counters.mailbox_timeouts,
        mailbox_full_refusals=counters.mailbox_full_refusals,
        outbox_full_refusals=counters.outbox_full_refusals,
        callers_waiting_for_restart=waiting_for_restart,
        callers_waiting_for_journal=waiting_for_journal,
        commands_per_s_recent=recent_per_s,
        entity_stopped_refusals=counters.entity_stopped_refusals,
        appends_waiting_for_journal=appends_waiting_for_journal,
    )


def uptime_of(started_at: float | None, stopped_at: float | None, now: float) -> float:
    """The runtime's uptime at ``now``: 0 until it has started (also while a journal it owns
    opens, and for good when it fails to start); it stops counting when the runtime exits."""
    if started_at is None:
        return 0.0
    return max((now if stopped_at is None else stopped_at) - started_at, 0.0)
