"""How the committer wakes the appenders of a committed batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest

from journals._committer import SPLIT_WAKE_MIN, FuturesDone, wake_appenders

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


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


async def _woken(
    count: int, wake: Callable[[FuturesDone], Awaitable[None]]
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
            await wake(done)
    assert done.waiting == 0
    return woken


async def test_many_appenders_are_woken_in_two_halves_in_order() -> None:
    count = SPLIT_WAKE_MIN * 2 + 1
    woken = await _woken(count, wake_appenders)
    assert [index for index, _ in woken] == list(range(count))
    # The first half ran before the rest were woken (the committer could write meanwhile).
    first, rest = count // 2, count - count // 2
    assert [waiting for _, waiting in woken] == [rest] * first + [0] * rest


async def test_few_appenders_are_woken_at_once() -> None:
    woken = await _woken(SPLIT_WAKE_MIN - 1, wake_appenders)
    assert woken == [(index, 0) for index in range(SPLIT_WAKE_MIN - 1)]


async def test_every_appender_is_woken_when_the_committer_is_cancelled_between_halves() -> None:
    async def cancelled_wake(done: FuturesDone) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()  # Delivered at the yield between the halves.
            await wake_appenders(done)
        assert scope.cancelled_caught

    woken = await _woken(SPLIT_WAKE_MIN, cancelled_wake)
    assert sorted(index for index, _ in woken) == list(range(SPLIT_WAKE_MIN))
