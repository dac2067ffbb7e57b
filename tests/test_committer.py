"""How the committer wakes the appenders of a committed batch, and places those waiting for
room."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import pytest

from journals import ConcurrencyError
from journals._committer import CommitQueue
from journals._file_thread import BlockingRunner
from journals._file_writer import SegmentWriter
from journals._index import JournalIndex
from journals._segment_files import SegmentFiles
from journals._wake import SPLIT_WAKE_MIN, FuturesDone, WakePacing, wake_appenders


def on_asyncio(test: Callable[[], Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Futures are asyncio's: these tests run on asyncio only."""
    return pytest.mark.anyio(pytest.mark.parametrize("anyio_backend", ["asyncio"])(test))


@on_asyncio
async def test_futures_done_wakes_the_first_waiters_then_the_rest() -> None:
    loop = asyncio.get_running_loop()
    done = FuturesDone(loop.create_future)
    waiters = [done.wait() for _ in range(5)]
    waiters[1].cancel()  # A caller that stopped waiting is skipped, not set.
    done.set_first(3)
    assert [w.done() for w in waiters] == [True, True, True, False, False]
    assert done.waiting == 2
    done.set()
    assert all(w.done() for w in waiters)
    assert waiters[1].cancelled()
    assert done.waiting == 0
    late = done.wait()  # A wait after the batch finished is done at once.
    assert late.done()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Futures are asyncio's.
@pytest.mark.parametrize("cancelled", [None, 0, 3, 6])
async def test_futures_done_resolves_every_waiter_but_a_cancelled_one(
    cancelled: int | None,
) -> None:
    done = FuturesDone(asyncio.get_running_loop().create_future)
    waiters = [done.wait() for _ in range(7)]
    if cancelled is not None:
        waiters[cancelled].cancel()
    done.set()
    for index, waiter in enumerate(waiters):
        if index == cancelled:
            assert waiter.cancelled()
        else:
            assert not waiter.cancelled()
            assert waiter.result() is None  # Raises unless it was resolved.


async def _woken(
    count: int, wake: Callable[[FuturesDone, list[tuple[int, int]]], Awaitable[None]]
) -> list[tuple[int, int]]:
    """Start ``count`` waiting appenders, run ``wake``; answer (appender, not yet woken) pairs."""
    done = FuturesDone(asyncio.get_running_loop().create_future)
    woken: list[tuple[int, int]] = []

    async def appender(index: int) -> None:
        await done.wait()
        woken.append((index, done.waiting))

    with anyio.fail_after(5):  # An appender never woken would wait forever.
        async with anyio.create_task_group() as group:
            for index in range(count):
                group.start_soon(appender, index)
            await anyio.wait_all_tasks_blocked()
            await wake(done, woken)
    assert done.waiting == 0
    return woken


def _pacing(per_appender_s: float, commit_s: float) -> WakePacing:
    """A pacing that measured appenders at ``per_appender_s`` and a commit of ``commit_s``."""
    pacing = WakePacing()
    pacing.woke(1000, now=0.0)
    pacing.commit_starts(now=per_appender_s * 1000)
    pacing.committed(commit_s)
    return pacing


@on_asyncio
async def test_slow_appenders_are_woken_in_two_halves_in_order() -> None:
    count = SPLIT_WAKE_MIN * 2 + 1
    pacing = _pacing(per_appender_s=10e-6, commit_s=0.1e-3)

    async def wake(done: FuturesDone, woken: list[tuple[int, int]]) -> None:
        await wake_appenders(done, pacing, queued=False)

    woken = await _woken(count, wake)
    assert [index for index, _ in woken] == list(range(count))
    # The first half ran before the rest were woken (the committer could write meanwhile).
    first, rest = count // 2, count - count // 2
    assert [waiting for _, waiting in woken] == [rest] * first + [0] * rest


@on_asyncio
async def test_appenders_that_would_not_outlast_a_commit_are_woken_at_once() -> None:
    pacing = _pacing(per_appender_s=1e-6, commit_s=1e-3)
    ran_before_the_committer: list[int] = []

    async def wake(done: FuturesDone, woken: list[tuple[int, int]]) -> None:
        await wake_appenders(done, pacing, queued=True)
        # With a batch queued, the committer let the woken appenders run before going on.
        ran_before_the_committer.append(len(woken))

    woken = await _woken(SPLIT_WAKE_MIN * 2, wake)
    assert woken == [(index, 0) for index in range(SPLIT_WAKE_MIN * 2)]
    assert ran_before_the_committer == [SPLIT_WAKE_MIN * 2]


@on_asyncio
async def test_every_appender_is_woken_when_the_committer_is_cancelled_between_halves() -> None:
    pacing = _pacing(per_appender_s=10e-6, commit_s=0.1e-3)

    async def cancelled_wake(done: FuturesDone, woken: list[tuple[int, int]]) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()  # Delivered at the yield between the halves.
            await wake_appenders(done, pacing, queued=False)
        assert scope.cancelled_caught

    woken = await _woken(SPLIT_WAKE_MIN, cancelled_wake)
    assert sorted(index for index, _ in woken) == list(range(SPLIT_WAKE_MIN))
    assert woken[0][1] > 0  # It was cancelled between the halves.


@pytest.mark.parametrize(
    ("waiting", "per_appender_s", "commit_s", "overlap"),
    [
        (1000, 10e-6, 0.5e-3, True),  # 10 ms of appenders against a 0.5 ms commit
        (100, 5e-6, 0.5e-3, False),  # 0.5 ms against 0.5 ms: another fsync would not pay
        (100, 15e-6, 0.5e-3, False),  # 1.5 ms: three times the commit, still not
        (1000, 2.1e-6, 0.5e-3, True),  # 2.1 ms: over four times the commit
        (SPLIT_WAKE_MIN - 1, 1.0, 1e-6, False),  # few appenders: never
    ],
)
def test_wake_pacing_overlaps_only_when_appenders_outlast_commits(
    waiting: int, per_appender_s: float, commit_s: float, overlap: bool
) -> None:
    assert not WakePacing().overlap(waiting)  # Nothing measured yet.
    assert _pacing(per_appender_s, commit_s).overlap(waiting) is overlap


def test_wake_pacing_measures_appenders_across_the_committers_yield() -> None:
    pacing = _pacing(per_appender_s=0.0, commit_s=0.5e-3)
    pacing.ran(500, seconds=5e-3)  # 10 us each
    assert pacing.overlap(1000)
    pacing.ran(500, seconds=0.1e-3)
    assert not pacing.overlap(1000)


@on_asyncio
async def test_appenders_woken_at_once_are_timed_to_the_next_commit() -> None:
    # With no batch queued, the wake tells the pacing how many it woke; the next commit's
    # start then measures them, which is how overlap is ever chosen on that path.
    pacing = WakePacing()
    pacing.committed(0.5e-3)
    done = FuturesDone(asyncio.get_running_loop().create_future)
    waiters = [done.wait() for _ in range(100)]
    await wake_appenders(done, pacing, queued=False)
    assert all(waiter.done() for waiter in waiters)
    pacing.commit_starts(time.perf_counter() + 1.0)  # They ran for a second: 10 ms each.
    assert pacing.overlap(SPLIT_WAKE_MIN)


@pytest.mark.anyio
async def test_withdraw_says_whether_a_queued_append_will_never_be_written() -> None:
    """``withdraw`` is true for an append that left the queue before it was placed, or that was
    refused when its turn came; false once it is placed (its batch will be written)."""
    queue = CommitQueue(
        JournalIndex(),
        cast(SegmentWriter, None),  # Placing writes nothing: the committer would.
        set(),
        SegmentFiles(),
        cast(BlockingRunner, None),
        batch_bytes_max=1 << 20,
        queue_bytes_max=1 << 20,
        segment_bytes_max=1 << 30,
    )

    def append(expected_version: int | None) -> Callable[[], Any]:
        return lambda: queue.place("s", b"s", [(b"E", b"", b"1")], 0, expected_version)

    queue.queued_bytes = queue.queue_bytes_max  # The queue is full: appends wait for room.
    withdrawn = queue.queue(append(None))
    placed = queue.queue(append(0))
    refused = queue.queue(append(0))  # Its turn comes after the one above took version 1.
    assert not placed.ready.is_set()
    # Misused, a queued append says how to use it (a bare AssertionError, or an AttributeError
    # under -O, before).
    with pytest.raises(RuntimeError, match=r"before the append was placed .* await its wait"):
        placed.started()
    assert withdrawn.withdraw()  # Never placed: it leaves the queue, nothing of it is written.
    assert withdrawn.withdraw()  # And again, the same answer (a bare ValueError before).
    assert list(queue.waiters) == [placed, refused]
    queue.queued_bytes = 0  # The committer wrote what was queued: room again.
    queue._admit_waiters()
    assert placed.ready.is_set()
    assert refused.ready.is_set()
    assert not withdrawn.ready.is_set()  # A withdrawn append is never placed.
    assert not queue.waiters
    assert (placed.version, placed.position) == (1, 1)
    assert placed.batch is queue.batches[-1]  # Placed in the batch the committer writes next.
    assert not placed.withdraw()  # Too late: it will be written, and answered by ``started``.
    assert refused.withdraw()  # Refused when its turn came: it will never be written.
    with pytest.raises(ConcurrencyError):
        refused.started()
