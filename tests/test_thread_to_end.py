"""``run_to_end``: a caller cancelled natively (asyncio) leaves only once its worker thread's
call has ended, and its cancellation is raised then, never lost; anyio cancel scopes (asyncio
and trio) are held as ``anyio.to_thread.run_sync`` holds them."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from journals._thread_to_end import run_to_end

from .native_cancellation import NativeCancellations

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


class Call:
    """A call that records that it ran, and whether it had ended when its caller went on."""

    def __init__(self, cancel: NativeCancellations | None = None, *, fails: bool = False):
        self.cancel = cancel
        self.fails = fails
        self.ran = 0
        self.ended = threading.Event()

    def __call__(self) -> str:
        self.ran += 1
        try:
            if self.cancel is not None:
                self.cancel.land()  # Cancelled while it runs.
            if self.fails:
                raise OSError("the call failed")
            return "done"
        finally:
            self.ended.set()


async def test_the_call_answers_its_value_or_its_error(anyio_backend: str) -> None:
    assert await run_to_end(Call()) == "done"
    with pytest.raises(OSError, match="the call failed"):
        await run_to_end(Call(fails=True), must_run=False)


@asyncio_only
@pytest.mark.parametrize("must_run", [True, False])
@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("cancellations", [1, 2, 3])
async def test_a_caller_cancelled_while_the_call_runs_leaves_once_it_has_ended(
    must_run: bool, fails: bool, cancellations: int
) -> None:
    task = asyncio.current_task()
    assert task is not None
    call = Call(NativeCancellations([task.cancel] * cancellations), fails=fails)
    with pytest.raises(asyncio.CancelledError):  # Not the call's error: the caller went.
        await run_to_end(call, must_run=must_run)
    assert call.ended.is_set()
    assert call.ran == 1
    assert task.cancelling() == cancellations  # None is lost.
    for _ in range(cancellations):
        task.uncancel()


async def _run_until_two_deadlines_pass(call: Call) -> None:
    async with asyncio.timeout(None) as outer:
        async with asyncio.timeout(None) as inner:
            call.cancel = NativeCancellations(
                [lambda: inner.reschedule(0), lambda: outer.reschedule(0)]
            )
            await run_to_end(call)
        pytest.fail("the outer deadline passed: the inner one must not swallow it")


@asyncio_only
async def test_each_deadline_that_passes_while_the_call_runs_is_told() -> None:
    """The outer deadline passes while the caller waits after the inner one did."""
    call = Call()
    with pytest.raises(TimeoutError):
        await _run_until_two_deadlines_pass(call)
    assert call.ended.is_set()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@asyncio_only
async def test_a_caller_cancelled_natively_before_the_call_began() -> None:
    task = asyncio.current_task()
    assert task is not None
    must, need_not = Call(), Call()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run_to_end(must)
    assert must.ran == 1  # Run all the same, and waited for.
    assert must.ended.is_set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run_to_end(need_not, must_run=False)
    assert need_not.ran == 0
    assert task.uncancel() == 1
    assert task.uncancel() == 0


async def test_a_caller_in_a_cancelled_scope(anyio_backend: str) -> None:
    """An anyio cancellation that comes before the thread began: a call that must run runs,
    then the cancellation comes; one that need not is never run."""
    must, need_not = Call(), Call()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await run_to_end(must)
        pytest.fail("the cancellation was swallowed")
    assert scope.cancelled_caught
    assert must.ran == 1
    with anyio.CancelScope() as scope:
        scope.cancel()
        await run_to_end(need_not, must_run=False)
    assert scope.cancelled_caught
    assert need_not.ran == 0


async def test_a_caller_whose_scope_is_cancelled_while_the_call_runs(anyio_backend: str) -> None:
    """As ``anyio.to_thread.run_sync``: the call's value, then the cancellation."""
    with anyio.CancelScope() as scope:
        call = Call()
        answers: list[str] = []

        def cancel_from_the_thread() -> str:
            anyio.from_thread.run_sync(scope.cancel)
            return call()

        answers.append(await run_to_end(cancel_from_the_thread))
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert answers == ["done"]


@asyncio_only
async def test_a_closed_coroutine_does_not_wait_and_nothing_runs_for_it() -> None:
    call = Call()
    coroutine = run_to_end(call, must_run=False)
    assert coroutine.send(None) is None  # At its first checkpoint, before any thread.
    coroutine.close()  # Waiting in a closed coroutine would be a RuntimeError.
    assert call.ran == 0
