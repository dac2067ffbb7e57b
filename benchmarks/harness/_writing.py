"""Filling a journal quickly for the recovery scenario: large appends from a few tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from journals import Journal, NewEvent

APPEND_EVENTS_MAX = 1_000
"""Events per append while filling (well under the journal's batch size in bytes)."""

WRITERS = 8
"""Concurrent appending tasks, so that group commit puts several appends in each batch."""


async def write_streams(
    journal: Journal, aggregate: Any, streams: Sequence[tuple[str, Sequence[NewEvent]]]
) -> int:
    """Append each ``(entity_id, events)`` to the entity's stream, in order; answer the count."""
    queue = list(reversed(streams))
    written = 0

    async def writer() -> None:
        nonlocal written
        while queue:
            entity_id, events = queue.pop()
            stream_id = aggregate.stream_id(entity_id)
            version = 0
            for start in range(0, len(events), APPEND_EVENTS_MAX):
                chunk = list(events[start : start + APPEND_EVENTS_MAX])
                result = await journal.append(stream_id, chunk, expected_version=version)
                version = result.version
            written += len(events)

    async with anyio.create_task_group() as group:
        for _ in range(WRITERS):
            group.start_soon(writer)
    return written


async def write_interleaved(
    journal: Journal,
    aggregate: Any,
    entity_ids: Sequence[str],
    events: Sequence[NewEvent],
    group: int,
) -> int:
    """Append ``events`` to each entity's stream one event per append, ``group`` entities at
    a time taking turns (each gets its first event, then each its second, ...), as commands
    to entities active at the same time write them; answer the count.

    The appends are placed in that order without waiting for each (``start_append``), so
    group commit writes many of them per batch and the order on disk is the order placed.
    """
    waiting: list[Any] = []
    for begin in range(0, len(entity_ids), group):
        stream_ids = [aggregate.stream_id(entity_id) for entity_id in entity_ids[begin:][:group]]
        for version, event in enumerate(events):
            for stream_id in stream_ids:
                started = journal.start_append(stream_id, [event], expected_version=version)
                if started is None:  # No room (or no such path): wait, then append.
                    await _durable(waiting)
                    await journal.append(stream_id, [event], expected_version=version)
                else:
                    waiting.append(started)
    await _durable(waiting)
    return len(entity_ids) * len(events)


async def _durable(started: list[Any]) -> None:
    """Wait until every append of ``started`` is durable (raising what one raised); empty it."""
    for durable, outcome, _, _ in started:
        await durable
        outcome.raise_error()
    started.clear()
