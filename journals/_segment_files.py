"""The read-only file descriptors of a FileJournal's segments, a bounded number of them open.

A journal gains a segment every ``segment_bytes_max`` bytes for as long as it lives, and the
process may hold only so many open files (often 1,024, the usual soft limit). Holding one
descriptor per segment made a long-lived journal fail at a roll once it reached that limit,
and then refuse to open at all (``Too many open files``). So at most
``SEGMENT_FILES_OPEN_MAX`` segments are kept open, the most recently read or written; a read
of another one opens it again (in a reader thread: the loop's thread never waits for an
``open``).

Reads run in several threads and on the loop's thread at once, so a descriptor is used
between ``acquire`` and ``release`` and closed only once no read uses it: a read never reads
a closed descriptor, or one whose number another file has taken meanwhile.
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

    Invariant: a descriptor in ``_in_use`` is never closed; one that left ``_open`` while in
    use is in ``_retired`` and closed by its last ``release``.
    """

    def __init__(self, open_max: int = SEGMENT_FILES_OPEN_MAX) -> None:
        self._open_max = open_max
        self._lock = threading.Lock()
        self._paths: dict[int, str] = {}
        self._open: OrderedDict[int, int] = OrderedDict()  # Least recently used first.
        self._in_use: dict[int, int] = {}  # Descriptor -> reads using it.
        self._retired: set[int] = set()

    def add(self, first_position: int, path: str, fd: int | None = None) -> None:
        """Know the segment at ``path``; ``fd``: a descriptor of it, open already (kept)."""
        with self._lock:
            self._paths[first_position] = path
            if fd is not None:
                self._keep(first_position, fd)

    def acquire(self, first_position: int, *, open_file: bool = True) -> int:
        """A descriptor of the segment, in use until ``release``; opened if need be, or, with
        ``open_file=False`` (the loop's thread), ``SegmentNotOpen`` raised instead."""
        with self._lock:
            fd = self._open.get(first_position)
            if fd is not None:
                self._open.move_to_end(first_position)
                self._in_use[fd] = self._in_use.get(fd, 0) + 1
                return fd
            path = self._paths[first_position]
        if not open_file:
            raise SegmentNotOpen
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
                fd = self._keep(first_position, opened)
            else:
                self._open.move_to_end(first_position)
            self._in_use[fd] = self._in_use.get(fd, 0) + 1
        if fd != opened:
            os.close(opened)
        return fd

    def release(self, fd: int) -> None:
        """The read that acquired ``fd`` is done with it."""
        with self._lock:
            count = self._in_use[fd] - 1
            if count:
                self._in_use[fd] = count
                return
            del self._in_use[fd]
            if fd not in self._retired:
                return
            self._retired.discard(fd)
        os.close(fd)

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

    def _keep(self, first_position: int, fd: int) -> int:
        """Keep ``fd`` open as the most recently used; close (or retire) the least recently
        used beyond ``open_max``. Called with the lock held."""
        self._open[first_position] = fd
        self._open.move_to_end(first_position)
        while len(self._open) > self._open_max:
            _, old = self._open.popitem(last=False)
            if old in self._in_use:
                self._retired.add(old)
            else:
                os.close(old)
        return fd
