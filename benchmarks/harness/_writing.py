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
