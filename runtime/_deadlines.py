"""Deadlines: those of callers waiting for room in a mailbox, kept by one task for all of
them, and ``within`` for the other waits before a command runs.

Waiting for room is the path that overload takes, thousands of times a second: a cancel scope
and a timer per caller would cost more than the wait itself. Each waiting caller is an entry
``[parked, handed, expired, queued]`` (see ``Engine._admit``); one task sleeps until the earliest
deadline and marks and wakes the callers whose deadline passed.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._actor import Parking

DEADLINES_COMPACT_MIN = 1024


class WaiterDeadlines:
    """A heap of ``(deadline, order, entry)``. Entries woken before their deadline stay in it
    until it passes or the heap is compacted."""

    __slots__ = ("_compact_at", "_heap", "_order", "_until", "_wake")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._compact_at = DEADLINES_COMPACT_MIN
        self._order = itertools.count()
        self._until = math.inf
        self._wake: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, deadline: float, entry: list[Any], parking: Parking) -> None:
        """Expire ``entry`` at ``deadline`` unless it was woken before."""
        heap = self._heap
        if len(heap) >= self._compact_at:
            # Most callers are handed a slot long before their deadline: drop their entries
            # once they are the majority, so the heap (and what it keeps alive) stays within
            # twice the callers still waiting, at amortised constant cost per caller.
            woken = parking.woken
            heap[:] = [item for item in heap if not woken(item[2][0])]
            heapq.heapify(heap)
            self._compact_at = max(DEADLINES_COMPACT_MIN, 2 * len(heap))
        heapq.heappush(heap, (deadline, next(self._order), entry))
        if deadline < self._until and self._wake is not None:
            self._wake.set()

    async def expire(self, parking: Parking) -> None:
        """Wake the callers whose deadline passed while they waited for room (one task)."""
        while True:
            self.expire_passed(parking)
            wake = self._wake = anyio.Event()
            with anyio.move_on_at(self._until):
                await wake.wait()

    def expire_passed(self, parking: Parking) -> None:
        """Mark and wake the callers whose deadline has passed; note the next deadline.

        A caller handed a slot is woken as it is handed one, and may run only after its
        deadline passed: it keeps the slot (it was given room in time) and is not marked.
        One marked here stays in the mailbox until a hand-off skips it.
        """
        heap = self._heap
        now = parking.now()
        while heap and heap[0][0] <= now:
            _, _, entry = heapq.heappop(heap)
            if parking.woken(entry[0]):
                continue  # handed a slot, or woken for another reason, in time
            # Left in the mailbox (removing it from the middle costs a scan): hand-offs
            # skip expired entries.
            entry[2] = True
            parking.wake(entry[0])
        self._until = heap[0][0] if heap else math.inf


async def within(
    deadline: float | None, function: Callable[..., Awaitable[Any]], *arguments: Any
) -> tuple[bool, Any]:
    """Await ``function(*arguments)`` until ``deadline``: (True, its result) or (False, None)."""
    if deadline is None:
        return True, await function(*arguments)
    with anyio.move_on_at(deadline):
        return True, await function(*arguments)
    return False, None
