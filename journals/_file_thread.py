"""Where the committer's blocking calls run: a dedicated writer thread, or anyio's pool.

Measured on a 2-core machine (benchmarks/journal_bench.py prints both): one write+fdatasync
costs ~113 us inline, ~210 us through a dedicated thread woken by a socket, and ~235 us (asyncio)
to ~310 us (trio) through ``anyio.to_thread.run_sync`` with a ``CapacityLimiter(1)``. On
asyncio, waking the loop with ``call_soon_threadsafe`` instead of the socket took a
non-durable single appender from ~14,000 to ~17,500 appends/s in the same run. The dedicated
thread is the default; the pool remains selectable to measure against.

The dedicated thread also gets the interpreter lock handed to it. A thread woken while the
event loop runs Python gets the lock only when the loop waits for I/O, or when it takes it by
force after the switch interval (5 ms by default). Under load the loop is never idle until
every command waits for a commit, so the writer used to start each batch only then, and the
loop sat idle through every write and sync: with one hot actor and 1,000 commands in flight,
a batch waited ~2.3 ms between being handed over and being started, and the loop was idle
~11 % of the time. So ``run`` waits (without the lock) until the call says it is entering its
I/O, which takes the writer the ~50 us it needs to wake, join and hash the batch; the loop
then runs while the write and its sync proceed: the loop idled ~6 % of the time, and the hot
actor's commands ran ~3 % faster in interleaved runs. The wait is bounded by what the
call should take (``handoff_wait_s``: 0.2 ms plus 2 ns per byte of the batch, about three
times what was measured); past it, the loop goes on and the writer takes the lock as before,
so a writer thread that the OS does not schedule costs the loop at most that.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ._exceptions import CLOSED_DURING_READ, JournalClosed
from ._thread_to_end import run_to_end

CommitThread = Literal["dedicated", "pool"]


def commit_thread_kind(kind: object) -> CommitThread:
    """``kind`` if it names where commits run (``CommitThread``); ValueError otherwise."""
    if kind not in ("dedicated", "pool"):
        raise ValueError(f"commit_thread is 'dedicated' or 'pool', not {kind!r}")
    return kind


HANDOFF_BASE_S = 0.0002
HANDOFF_S_PER_BYTE = 2e-9


def handoff_wait_s(batch_bytes: int) -> float:
    """How long the loop waits for the writer to enter the I/O of a batch (see above)."""
    return HANDOFF_BASE_S + batch_bytes * HANDOFF_S_PER_BYTE


class BlockingRunner(Protocol):
    async def run(
        self, function: Callable[..., Any], *args: Any, handoff_s: float = 0.0
    ) -> Any: ...

    def entering_io(self) -> None:
        """Called by a running call, from its thread, just before it blocks in I/O."""

    async def stop(self) -> None: ...


class PoolRunner:
    """Runs each call through anyio's worker threads, one call at a time."""

    def __init__(self) -> None:
        self._limiter = anyio.CapacityLimiter(1)

    async def run(self, function: Callable[..., Any], *args: Any, handoff_s: float = 0.0) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def entering_io(self) -> None:
        return None  # The call is handed over inside run_sync: no wait to end here.

    async def stop(self) -> None:
        return None


class DedicatedThreadRunner:
    """One thread that runs one call at a time and wakes the event loop when it is done.

    On asyncio the thread resolves a future through ``call_soon_threadsafe`` (the loop's own
    wake-up, always registered); elsewhere (trio) it writes to a socket the loop waits on with
    ``anyio.wait_readable``. The future saves the two epoll registrations per call that
    waiting on the socket costs there. One call is in flight at a time (the committer's
    invariant); ``run`` is not re-entrant. Calls run here say when they enter their I/O
    (``entering_io``): ``run`` hands the interpreter lock over until then, for at most the
    ``handoff_s`` it is given (0: no hand-over) and never more than ``handoff_max_s``.
    """

    def __init__(self, *, handoff_max_s: float = 0.005) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._handoff_max_s = handoff_max_s
        self._in_io = threading.Event()
        self._loop = running_asyncio_loop()
        self._receiver, self._sender = socket.socketpair()
        self._receiver.setblocking(False)
        self._outcome: tuple[bool, Any] = (True, None)
        self._thread = threading.Thread(target=self._serve, name="eventfold-journal-writer")
        self._thread.daemon = True
        self._thread.start()
        self._busy = False

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            function, args, future = call
            try:
                outcome: tuple[bool, Any] = (True, function(*args))
            except BaseException as error:  # Handed to the waiting task, which re-raises it.
                outcome = (False, error)
            if future is not None:
                assert self._loop is not None
                self._loop.call_soon_threadsafe(_resolve, future, outcome)
            else:
                self._outcome = outcome
                self._sender.send(b"\x01")

    async def run(self, function: Callable[..., Any], *args: Any, handoff_s: float = 0.0) -> Any:
        assert not self._busy, "one call at a time"
        handoff_s = min(handoff_s, self._handoff_max_s)
        self._busy = True
        try:
            # Not cancellable half-way: the call runs to its end, like to_thread.run_sync.
            with anyio.CancelScope(shield=True):
                self._in_io.clear()
                if self._loop is not None:
                    future: asyncio.Future[tuple[bool, Any]] = self._loop.create_future()
                    self._calls.put((function, args, future))
                    if handoff_s > 0:
                        self._in_io.wait(handoff_s)  # The lock goes to the writer.
                    succeeded, value = await future
                else:
                    self._calls.put((function, args, None))
                    if handoff_s > 0:
                        self._in_io.wait(handoff_s)
                    await anyio.wait_readable(self._receiver)
                    self._receiver.recv(16)
                    succeeded, value = self._outcome
                    self._outcome = (True, None)
        finally:
            self._busy = False
        if not succeeded:
            raise value
        return value

    def entering_io(self) -> None:
        self._in_io.set()

    async def stop(self) -> None:
        self._calls.put(None)
        try:
            await run_to_end(self._thread.join)  # Shielded, even from a native cancellation.
        finally:
            self._receiver.close()
            self._sender.close()


class ReaderThreads:
    """A few threads that run the journal's reads, handed their calls through one queue.

    On asyncio a call costs the loop ~9 us of CPU this way, against ~45 us through
    ``anyio.to_thread.run_sync`` (measured with 100 tasks reading at once), which is most of
    the cost of reading a short stream. Elsewhere (trio) the calls go through anyio's worker
    threads, as many at a time as there are threads here, and a cancelled caller stops
    waiting at once there too (``_PoolCall``).

    Invariant: the queue holds at most one call per task waiting in ``run`` (each waits for
    its own), so the callers bound it, besides calls whose callers were cancelled, which are
    dropped untouched when their turn comes. (Run, those piled up: fifty clients giving up
    reads after 20 ms while each took 50 ms left the next read waiting six seconds behind
    them.)
    """

    def __init__(self, threads: int) -> None:
        self._loop = running_asyncio_loop()
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._limiter = anyio.CapacityLimiter(threads)
        self._stopped = False
        # Elsewhere (trio): the calls in anyio's threads, and what stop waits on for them.
        self._running = 0
        self._idle: anyio.Event | None = None
        self._threads: list[threading.Thread] = []
        if self._loop is not None:
            for number in range(threads):
                thread = threading.Thread(
                    target=self._serve, name=f"eventfold-journal-reader-{number}"
                )
                thread.daemon = True
                thread.start()
                self._threads.append(thread)

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            call = self._calls.get()
            if call is None:
                return
            function, args, future = call
            assert future is not None
            if future.cancelled():
                # Its caller stopped waiting before it began (a timeout, say): run, it would
                # hold up every read queued after it for an outcome nobody takes.
                continue
            try:
                outcome: tuple[bool, Any] = (True, function(*args))
            except BaseException as error:  # Handed to the waiting task, which re-raises it.
                outcome = (False, error)
            loop.call_soon_threadsafe(_resolve, future, outcome)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._stopped:
            raise JournalClosed(CLOSED_DURING_READ)
        if self._loop is None:
            # Counted until the thread's call has returned, so that stop, and the closing of
            # the files after it, waits for it; abandoned by a cancelled caller, as on asyncio
            # (waited for, its cancellation was delivered only after the call, if ever: a
            # read that took longer than its caller's deadline returned without a timeout).
            call = _PoolCall(function, args, self._call_ended)
            self._running += 1
            try:
                value = await anyio.to_thread.run_sync(
                    call.run, limiter=self._limiter, abandon_on_cancel=True
                )
            except BaseException:
                if call.abandon():
                    self._call_ended()  # Not begun (it never will be), or returned already.
                raise
            self._call_ended()
            return value
        future: asyncio.Future[tuple[bool, Any]] = self._loop.create_future()
        self._calls.put((function, args, future))
        # A cancelled caller stops waiting; a read already begun runs to its end (files are
        # closed only after the reads handed over) and its outcome is dropped.
        succeeded, value = await future
        if not succeeded:
            raise value
        return value

    def _call_ended(self) -> None:
        self._running -= 1
        if self._running == 0 and self._idle is not None:
            self._idle.set()

    async def stop(self) -> None:
        """Let the calls already handed over finish, then end the threads."""
        self._stopped = True
        for _ in self._threads:
            self._calls.put(None)

        def join() -> None:
            for thread in self._threads:
                thread.join()

        with anyio.CancelScope(shield=True):
            if self._running:  # Only elsewhere (trio), which has no native cancellation.
                self._idle = anyio.Event()
                await self._idle.wait()
        await run_to_end(join)  # Shielded, even from a native cancellation.


class _PoolCall:
    """A read in one of anyio's worker threads (trio), which its caller may abandon.

    Whichever comes first says who counts its end (``ReaderThreads._call_ended``): a caller
    cancelled before the thread began it (the thread then skips it) or after it returned
    counts it itself; one cancelled while it runs leaves that to the thread, which tells the
    event loop once the call returns.
    """

    __slots__ = ("_args", "_ended", "_function", "_lock", "_state")

    def __init__(
        self, function: Callable[..., Any], args: tuple[Any, ...], ended: Callable[[], None]
    ) -> None:
        self._function = function
        self._args = args
        self._ended = ended
        self._lock = threading.Lock()
        self._state = "waiting"  # then "running", "returned", or "abandoned"

    def run(self) -> Any:
        with self._lock:
            if self._state == "abandoned":
                return None  # Its caller gave up before it began: it is not run.
            self._state = "running"
        try:
            return self._function(*self._args)
        finally:
            with self._lock:
                abandoned, self._state = self._state == "abandoned", "returned"
            if abandoned:
                with contextlib.suppress(RuntimeError):  # The event loop is gone: so is stop.
                    anyio.from_thread.run_sync(self._ended)

    def abandon(self) -> bool:
        """Its caller stops waiting: whether the caller counts its end (it is not running)."""
        with self._lock:
            running = self._state == "running"
            self._state = "abandoned"
        return not running


_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[tuple[bool, Any]] | None"]


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # Not asyncio (trio).
        return None


def _resolve(future: asyncio.Future[tuple[bool, Any]], outcome: tuple[bool, Any]) -> None:
    if not future.done():  # Cancelled from outside anyio's shield: nobody is waiting.
        future.set_result(outcome)


def make_runner(kind: CommitThread) -> BlockingRunner:
    if kind == "dedicated":
        return DedicatedThreadRunner()
    if kind == "pool":
        return PoolRunner()
    raise ValueError(f"commit_thread is 'dedicated' or 'pool', not {kind!r}")


def loop_checkpoint() -> Callable[[], Awaitable[None]]:
    """The running event loop's own way to yield once.

    ``anyio.lowlevel.checkpoint`` looks up the running backend on every call, which costs
    more than the yield itself on the path of a cached read.
    """
    if running_asyncio_loop() is not None:
        return functools.partial(asyncio.sleep, 0)
    trio = sys.modules.get("trio")
    if trio is not None:
        checkpoint: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint
        return checkpoint
    return anyio.lowlevel.checkpoint
