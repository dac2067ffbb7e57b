"""Native asyncio cancellations that land exactly where a test wants them.

A worker thread that a task waits for asks the event loop to cancel that task, then waits
until the task has been woken with the cancellation (and has yielded once after it) before it
goes on. The order of the loop's callbacks makes this exact, without sleeps: whatever the task
does with its cancellation in its first step after it has been woken is done before the
thread is let go.
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Callable, Sequence

from journals.testing import FileIO

WAIT_S = 10.0


class NativeCancellations:
    """Built on the event loop's thread; ``land()`` is called from a worker thread."""

    def __init__(self, cancellations: Sequence[Callable[[], object]] | None = None) -> None:
        """``cancellations``: each cancels the task natively (``Task.cancel``, a deadline
        moved to now), one per step of the task; by default one ``Task.cancel``."""
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self._cancellations = list(cancellations or [task.cancel])
        self.landed = threading.Event()

    def land(self) -> None:
        """From a worker thread: cancel the task (as many times as asked, one step apart),
        and return once the task has taken the last step after the last one."""
        self._loop.call_soon_threadsafe(self._next, 0)
        assert self.landed.wait(WAIT_S), "the event loop did not deliver the cancellation"

    def _next(self, index: int) -> None:
        if index == len(self._cancellations):
            self.landed.set()
            return
        self._cancellations[index]()
        # A deadline moved to now expires in the next round of callbacks and wakes the task
        # in the one after: two rounds later the task has taken its step.
        self._loop.call_soon(self._loop.call_soon, self._next, index + 1)


class LockWatch(FileIO):
    """A journal's file layer that calls ``on_rename`` as a file whose name ends with
    ``renamed`` is renamed into place (a point to land a cancellation at), and sets
    ``unlocked`` when the journal's lock is given back."""

    def __init__(self, renamed: str) -> None:
        self.renamed = renamed
        self.on_rename: Callable[[], object] = lambda: None
        self.unlocked = threading.Event()
        self.lock_fd = -1

    def replace(self, source: str, target: str) -> None:
        if source.endswith(self.renamed):
            self.on_rename()
        super().replace(source, target)

    def flock(self, fd: int, operation: int) -> None:
        super().flock(fd, operation)
        if operation & fcntl.LOCK_EX:
            self.lock_fd = fd

    def close(self, fd: int) -> None:
        super().close(fd)
        if fd == self.lock_fd:
            self.unlocked.set()  # Closing the lock file gives the lock back.
