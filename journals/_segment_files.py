"""The read-only file descriptors of a FileJournal's segments, a bounded number of them open.

A journal gains a segment every ``segment_bytes_max`` bytes for as long as it lives, and the
process may hold only so many open files (often 1,024, the usual soft limit). Holding one
descriptor per segment made a long-lived journal fail at a roll once it reached that limit,
and then refuse to open at all (``Too many open files``). So at most
``SEGMENT_FILES_OPEN_MAX`` segments are kept open, the most recently read or written; a read
of another one opens it again (in a reader thread: the loop's thread never waits for an
``open``).

Reads run on the loop's thread (from the page cache) and in reader threads at once, so only
the loop's thread ever closes a descriptor, and only one that no reader thread uses: a reader
thread's read is counted from ``acquire`` to ``release``, and a descriptor that leaves the
open set meanwhile is retired, to be closed by the loop's thread once no such read uses it. A
read on the loop's thread (``acquire_on_loop``) is not counted: it runs to its end without
yielding, so nothing the loop's thread does can close its descriptor under it, and reader
threads close none. (Counting it cost a replay of a short stream about 2 %.)

So the files a reader thread opens stay open until the loop's thread closes them after the
read: a read of a stream with one event in each of thousands of segments opened one file per
segment and ran into the limit of open files. A read in a reader thread therefore stops
opening files once ``crowded`` says that as many are retired as are kept open (it answers the
events it has, and the caller asks again after the loop's thread closed them), which bounds
the open files at about twice ``open_max``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from ._exceptions import JournalCorrupted

SEGMENT_FILES_OPEN_MAX = 128
"""The most segment files a journal keeps open for reading at once."""


class SegmentNotOpen(Exception):
    """``acquire(..., open_file=False)`` of a segment whose file is not open now."""


class SegmentFiles:
    """Read-only descriptors of the segments by first position; at most ``open_max`` open.

    Invariant: only the loop's thread closes a descriptor (or ``close``, once no read runs),
    never one in ``_in_use``; one that left ``_open`` and was not closed then is in
    ``_retired`` until ``collect`` or the next read on the loop's thread closes it.
    """

    def __init__(self, open_max: int = SEGMENT_FILES_OPEN_MAX) -> None:
        self._open_max = open_max
        self._lock = threading.Lock()
        self._paths: dict[int, str] = {}
        self._open: OrderedDict[int, int] = OrderedDict()  # Least recently used first.
        self._in_use: dict[int, int] = {}  # Descriptor -> reads using it.
        self._retired: set[int] = set()

    def add(self, first_position: int, path: str, fd: int | None = None) -> None:
        """Know the segment at ``path``; ``fd``: a descriptor of it, open already (kept).
        Called on the loop's thread, or while no read runs (opening)."""
        with self._lock:
            self._paths[first_position] = path
            if fd is not None:
                self._keep(first_position, fd, on_loop=True)

    def acquire_on_loop(self, first_position: int) -> int:
        """A descriptor of the segment for a read on the loop's thread that does not yield
        before it is done with it (no ``release``); ``SegmentNotOpen`` when the file is not
        open (opening it is a reader thread's work)."""
        if self._retired:
            self._close_retired()
        fd = self._open.get(first_position)  # One dict lookup: atomic for reader threads.
        if fd is None:
            raise SegmentNotOpen
        return fd

    def acquire(self, first_position: int) -> int:
        """A descriptor of the segment for a reader thread, in use until ``release``; the
        file is opened if it is not open."""
        with self._lock:
            fd = self._open.get(first_position)
            if fd is not None:
                self._open.move_to_end(first_position)
                self._in_use[fd] = self._in_use.get(fd, 0) + 1
                return fd
            path = self._paths[first_position]
        try:
            opened = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise JournalCorrupted(
                path,
                0,
                "the segment file is gone (removed or renamed while the journal was open)",
                during="read",
            ) from None
        with self._lock:
            fd = self._open.get(first_position)
            if fd is None:  # Else another read opened it meanwhile: use that one.
                fd = self._keep(first_position, opened, on_loop=False)
            else:
                self._open.move_to_end(first_position)
            self._in_use[fd] = self._in_use.get(fd, 0) + 1
        if fd != opened:
            os.close(opened)  # Never shared: no other read has seen it.
        return fd

    def release(self, fd: int) -> None:
        """The reader thread's read that acquired ``fd`` is done with it. A retired
        descriptor stays open for the loop's thread to close (it may be reading it)."""
        with self._lock:
            count = self._in_use[fd] - 1
            if count:
                self._in_use[fd] = count
            else:
                del self._in_use[fd]

    def crowded(self) -> bool:
        """Whether as many descriptors are retired as are kept open: a read in a reader thread
        then opens no more files until the loop's thread closed them."""
        return len(self._retired) >= self._open_max  # One len: atomic for reader threads.

    def collect(self) -> None:
        """On the loop's thread: close the retired descriptors no reader thread uses."""
        if self._retired:
            self._close_retired()

    def close(self) -> None:
        """Close every descriptor. Called once no read runs any more."""
        with self._lock:
            fds = [*self._open.values(), *self._retired]
            self._open.clear()
            self._retired.clear()
            self._in_use.clear()
        for fd in fds:
            os.close(fd)

    def open_count(self) -> int:
        """How many descriptors are open now (kept, or retired but still in use)."""
        with self._lock:
            return len(self._open) + len(self._retired)

    def _keep(self, first_position: int, fd: int, *, on_loop: bool) -> int:
        """Keep ``fd`` open as the most recently used; the least recently used beyond
        ``open_max`` leave the open set, closed now only on the loop's thread and when no
        reader thread uses them, else retired. Called with the lock held."""
        self._open[first_position] = fd
        self._open.move_to_end(first_position)
        while len(self._open) > self._open_max:
            _, old = self._open.popitem(last=False)
            if on_loop and old not in self._in_use:
                os.close(old)
            else:
                self._retired.add(old)
        return fd

    def _close_retired(self) -> None:
        with self._lock:
            free = [fd for fd in self._retired if fd not in self._in_use]
            self._retired.difference_update(free)
        for fd in free:
            os.close(fd)
