"""How appenders wait for a committed batch, and how the committer wakes them.

A batch's appenders wait on its ``BatchDone``: on asyncio one future per appender
(``FuturesDone``), elsewhere ``anyio.Event``. Once the batch is durable the committer wakes
them at once or in two halves (``WakePacing``), from what it measured of the appenders and
of the disk.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import anyio.lowlevel

SPLIT_WAKE_MIN = 64
"""Fewer appenders than this are never woken in two halves (``WakePacing``)."""
OVERLAP_RATIO = 4
"""Appenders are woken in two halves when they would run this many times longer than a commit
(measured: at 3 times, 100 callers over 10,000 actors lost a fifth of their commands/s to the
second fsync per round; at 8 times and more, 1,000 callers gained)."""


class BatchDone(Protocol):
    """What an append waits on: set once, when its batch is durable or failed."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[None]: ...


class FuturesDone:
    """``BatchDone`` on asyncio: one future per waiter, resolved together.

    Cheaper than ``anyio.Event`` (which wraps ``asyncio.Event``): ``wait`` hands out the
    future itself, so an append awaits it with no coroutine object of its own in between,
    which also means fewer cyclic-GC passes with thousands of appends in flight. A cancelled
    waiter cancels only its own future.
    """

    __slots__ = ("_create", "_finished", "_waiters")

    def __init__(self, create: Callable[[], asyncio.Future[None]]) -> None:
        self._create = create
        self._waiters: list[asyncio.Future[None]] = []
        self._finished = False

    def set(self) -> None:
        self._finished = True
        _resolve_all(self._waiters)
        self._waiters.clear()

    def set_first(self, count: int) -> None:
        """Wake the first ``count`` waiters now (``set`` wakes the rest)."""
        waiters = self._waiters
        _resolve_all(waiters[:count])
        del waiters[:count]

    @property
    def waiting(self) -> int:
        """How many waiters are not woken yet."""
        return len(self._waiters)

    def wait(self) -> asyncio.Future[None]:
        waiter = self._create()
        if self._finished:
            waiter.set_result(None)
        else:
            self._waiters.append(waiter)
        return waiter


def _resolve_all(waiters: list[asyncio.Future[None]]) -> None:
    """Resolve every waiter not cancelled: in one C loop, unless one was cancelled."""
    try:
        _consume(map(_set_result, waiters, itertools.repeat(None, len(waiters))), 0)
    except asyncio.InvalidStateError:  # A cancelled waiter: the rest one by one.
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_set_result = asyncio.Future.set_result
_consume = deque


def done_factory() -> Callable[[], BatchDone]:
    """How batches signal completion on the running event loop (asyncio: futures)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # Not asyncio (trio): anyio's event is the portable way.
        return anyio.Event
    return functools.partial(FuturesDone, loop.create_future)


class WakePacing:
    """How a committed batch wakes its appenders, from what the committer measured.

    Appenders that append again as soon as they are answered (a hot actor's pipelined
    commands) all place their next appends before the committer runs again, if they are
    woken at once, and the loop then sits idle while that batch is written and synced.
    Woken in two halves, with one yield of the committer in between, the first half's appends
    are written while the second half runs ("overlap"). That pays when running the appenders
    takes longer than a commit, and costs a write and an fsync more per round when it does
    not: a hundred appenders on a disk that syncs in half a millisecond ran a third slower.
    Then the committer instead lets the woken appenders run before it takes the next batch, so
    that their appends join the batch already queued rather than wait for another ("merge").

    Overlap is chosen when the appenders, at the time per appender last measured, would run
    ``OVERLAP_RATIO`` times longer than the last write and fsync. No appender is answered
    later for either: the second half would have run after the first anyway.
    """

    __slots__ = ("_commit_s", "_per_appender_s", "_woke_at", "_woken")

    def __init__(self) -> None:
        self._per_appender_s = 0.0
        self._commit_s = 0.0
        self._woke_at: float | None = None
        self._woken = 0

    def committed(self, seconds: float) -> None:
        """A batch was written and synced in ``seconds``."""
        self._commit_s = seconds

    def commit_starts(self, now: float) -> None:
        """A commit begins: appenders woken with nothing queued behind them have run."""
        if self._woke_at is not None:
            self._per_appender_s = (now - self._woke_at) / self._woken
            self._woke_at = None

    def overlap(self, waiting: int) -> bool:
        """Whether ``waiting`` appenders are woken in two halves."""
        return (
            waiting >= SPLIT_WAKE_MIN
            and waiting * self._per_appender_s > OVERLAP_RATIO * self._commit_s
        )

    def woke(self, count: int, now: float) -> None:
        """``count`` appenders were woken with no batch queued: time them to the next commit."""
        if count:
            self._woke_at = now
            self._woken = count

    def ran(self, count: int, seconds: float) -> None:
        """``count`` woken appenders ran in ``seconds`` (measured across the committer's yield)."""
        if count:
            self._per_appender_s = seconds / count
            self._woke_at = None


async def wake_appenders(done: BatchDone, pacing: WakePacing, *, queued: bool) -> None:
    """Wake a committed batch's appenders, at once or in two halves (see ``WakePacing``).

    ``queued``: whether the next batch is queued already. An appender cancelled while the
    committer yields does not keep the others from being woken.
    """
    if isinstance(done, FuturesDone) and pacing.overlap(waiting := done.waiting):
        first = waiting // 2
        started = time.perf_counter()
        try:
            done.set_first(first)
            await anyio.lowlevel.checkpoint()  # The first half runs and places.
        finally:
            done.set()  # The rest run while the committer writes what was placed.
        pacing.ran(first, time.perf_counter() - started)
        return
    woken = done.waiting if isinstance(done, FuturesDone) else 0
    done.set()
    if not queued:
        pacing.woke(woken, time.perf_counter())
        return
    # Let the woken appenders run first, so that they join the queued batch.
    started = time.perf_counter()
    await anyio.lowlevel.checkpoint()
    pacing.ran(woken, time.perf_counter() - started)
