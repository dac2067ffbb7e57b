"""Calls in a worker thread that their caller does not leave before they have ended.

``anyio.to_thread.run_sync`` (not abandoned on cancellation) holds an anyio cancel scope's
cancellation until the thread's call has returned. A native asyncio cancellation
(``Task.cancel``, which ``asyncio.timeout``, ``asyncio.wait_for`` and a failing sibling in an
``asyncio.TaskGroup`` use) is not held: the waiting task gets its ``CancelledError`` at once
while the thread goes on. Opening and closing a journal's files run in such calls, and what
they do (the directory's lock above all) belongs to their caller: a caller that went on at
once (to open the journal again, say) found the lock still held, or, when the cancellation
came before the thread began a close, held for good.

``run_to_end`` waits for the call after such a cancellation, then raises it: the caller leaves
as it would after an anyio cancellation, once the thread's work is settled. Further native
cancellations while it waits are taken in and not lost: the first one is raised once the call
has ended, and the task's count of cancellation requests (``Task.cancelling``) keeps every one,
so each ``asyncio.timeout`` that expired meanwhile still tells its own expiry. An anyio cancel
scope is not delivered while it waits (the wait is shielded). Trio cancels only through cancel
scopes, so there nothing changes. The wait costs nothing unless a cancellation comes.

A call may also be cancelled before a thread began it (at the call's first checkpoint, say):
``must_run`` says whether it is then run all the same (closing: the files must be closed) or
never (opening: nothing to open for a caller that has gone). Which came first, the thread or
the cancellation, is decided under a lock.

A coroutine that is closed (``GeneratorExit``: its event loop was closed with it pending) can
no longer wait: it leaves at once, and a call already handed to a thread ends alone (unless,
with ``must_run=False``, it had not begun).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


async def run_to_end(function: Callable[[], T], *, must_run: bool = True) -> T:
    """``function()`` in a worker thread; its value, or what it raised.

    A caller cancelled natively (asyncio) leaves only once ``function`` has ended, or, with
    ``must_run=False``, never began and never will; then the cancellation is raised (whatever
    the call answered is dropped). With ``must_run`` a call cancelled before it began is run
    all the same, and waited for.
    """
    call = _Call(function)
    try:
        await anyio.to_thread.run_sync(call.run)
    except GeneratorExit:
        if not must_run:
            call.take()  # Not begun, it never will be: nobody would take what it answers.
        raise
    except BaseException:
        if must_run or not call.take():
            await call.wait_to_end()
        raise
    return call.outcome()


class _Call(Generic[T]):
    """One call, taken once: by the thread that runs it, or by a caller that gives it up."""

    __slots__ = ("_ended", "_error", "_function", "_lock", "_taken", "_value")

    def __init__(self, function: Callable[[], T]) -> None:
        self._function = function
        self._lock = threading.Lock()
        self._taken = False
        self._ended = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def take(self) -> bool:
        """Whether this took the call (so nobody else will run it)."""
        with self._lock:
            taken, self._taken = self._taken, True
        return not taken

    def run(self) -> None:
        """In a worker thread: run the call, unless it was taken already."""
        if not self.take():
            return
        try:
            self._value = self._function()
        except BaseException as error:  # Handed to the caller by outcome().
            self._error = error
        finally:
            self._ended.set()

    def run_or_wait(self) -> None:
        """In a worker thread: run the call if nobody took it yet; return once it ended.
        Only for a call that was not given up (``take`` by its caller)."""
        self.run()
        self._ended.wait()

    async def wait_to_end(self) -> None:
        """Return once the call has ended (run here if nobody began it), whatever native
        cancellations come meanwhile: the caller raises the one it is handling."""
        with anyio.CancelScope(shield=True):
            while not self._ended.is_set():
                try:
                    await anyio.to_thread.run_sync(self.run_or_wait)
                except anyio.get_cancelled_exc_class():
                    # Native (a shielded scope takes no other): the task still counts it,
                    # and the caller raises a cancellation once the call has ended. A thread
                    # waiting here is left to return when the call does.
                    continue

    def outcome(self) -> T:
        """What the call returned, or raise what it raised; only once it has ended."""
        assert self._ended.is_set()
        error, self._error = self._error, None  # No cycle through its traceback.
        if error is not None:
            raise error
        return self._value  # type: ignore[return-value]  # Set: the call returned.
