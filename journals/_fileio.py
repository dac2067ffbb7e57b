"""The one small class through which FileJournal changes files.

Every write, fdatasync, fsync, ftruncate, rename, removal and file or directory creation of a
FileJournal goes through a ``FileIO`` instance, so a test can hand the journal a subclass that
injects faults (``journals.testing.FaultyFileIO``) or records what a power cut could undo. So
do the reads of the snapshot file, so that a test can hold one while the journal closes.
Methods block: callers run them in a worker thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
from stat import S_ISDIR, S_ISREG

from ._exceptions import JournalCorrupted
from ._validation import SEGMENT_FILE_BYTES_MAX

_RWF_DSYNC: int = getattr(os, "RWF_DSYNC", 0)
"""Linux's per-write O_DSYNC flag for ``pwritev`` (0 where the platform has none)."""
_NO_SYNCED_WRITE = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
"""What a kernel or filesystem without synced writes answers to one."""


class FileIO:
    """Plain OS calls. Subclass and override single methods to inject faults (a test aid)."""

    _synced_writes_unsupported = False  # Set once a synced write was refused here.

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write some of ``data`` at ``offset``; answer how many bytes were written."""
        return os.pwrite(fd, data, offset)

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        """Read up to ``length`` bytes at ``offset`` (the snapshot file's reads)."""
        return os.pread(fd, length, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fsync_directory(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def makedirs(self, path: str, mode: int) -> None:
        """Create the journal's directory and any missing parents; nothing if it exists.

        Raises ``FileExistsError`` when a file (not a directory) has that name."""
        os.makedirs(path, mode=mode, exist_ok=True)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove(self, path: str) -> None:
        os.remove(path)

    def close(self, fd: int) -> None:
        os.close(fd)

    def flock(self, fd: int, operation: int) -> None:
        """``fcntl.flock``: the journal directory's lock (raises ``BlockingIOError`` when a
        non-blocking request finds it held)."""
        fcntl.flock(fd, operation)

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset`` and make it durable: ``pwrite_all``, ``fdatasync``.

        Where the OS offers a write that syncs what it wrote before it returns (Linux:
        ``pwritev`` with ``RWF_DSYNC``, the same guarantee as ``fdatasync`` for those bytes),
        one system call does both: the thread that calls this then needs the interpreter
        lock once less per batch, and with the event loop busy in the other thread that wait
        is what delays a commit most. A subclass that overrides ``pwrite`` or ``fdatasync``
        (to inject faults) has them called, as before.
        """
        if (
            _RWF_DSYNC
            and not self._synced_writes_unsupported
            and type(self).pwrite is FileIO.pwrite
            and type(self).fdatasync is FileIO.fdatasync
        ):
            view = memoryview(data)
            written = 0
            while written < len(data):
                try:
                    count = os.pwritev(fd, [view[written:]], offset + written, _RWF_DSYNC)
                except OSError as error:
                    if written or error.errno not in _NO_SYNCED_WRITE:
                        raise
                    self._synced_writes_unsupported = True  # Not here: write, then sync.
                    break
                if count <= 0:
                    raise OSError(errno.EIO, f"write made no progress after {written} bytes")
                written += count
            else:
                return
        self.pwrite_all(fd, data, offset)
        self.fdatasync(fd)

    def pwrite_all(self, fd: int, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset``, looping over short writes; raise on no progress."""
        view = memoryview(data)
        written = 0
        while written < len(data):
            count = self.pwrite(fd, view[written:], offset + written)
            if count <= 0:
                raise OSError(errno.EIO, f"write made no progress after {written} bytes")
            written += count


def read_file(path: str) -> bytes:
    """The bytes of the file at ``path``, read whole (what opening and the tools scan).

    The ``OSError`` of a failing read (EIO from a failing disk) names the file, as the one of
    a failing open does: without a name, what reports it could not say which file.
    """
    with open(path, "rb") as file:
        try:
            return file.read()
        except OSError as error:
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, path) from None


class FileTooLarge(Exception):
    """``read_file_up_to`` found more bytes than it may read: ``size``, unread."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def read_file_up_to(path: str, bytes_max: int) -> bytes:
    """``read_file``, for a file that cannot hold more than ``bytes_max`` bytes as the journal
    writes it: a larger one raises ``FileTooLarge`` without being read, since a sparse file of
    many GiB would otherwise take that much memory before a single byte was checked. What is
    appended after its size was taken is not read, as if it had been read a moment earlier.
    """
    with open(path, "rb") as file:
        try:
            size = os.fstat(file.fileno()).st_size
            if size > bytes_max:
                raise FileTooLarge(size)
            return file.read(size)
        except OSError as error:
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, path) from None


def read_segment_file(path: str) -> bytes:
    """The bytes of the segment file at ``path``, read whole; ``JournalCorrupted``, unread, for
    a file larger than any segment a journal writes (``SEGMENT_FILE_BYTES_MAX``)."""
    try:
        return read_file_up_to(path, SEGMENT_FILE_BYTES_MAX)
    except FileTooLarge as too_large:
        raise JournalCorrupted(
            path,
            SEGMENT_FILE_BYTES_MAX,
            f"the segment file is {too_large.size:,} bytes long, and a journal writes at most "
            f"{SEGMENT_FILE_BYTES_MAX:,} bytes into one (the largest segment_bytes_max, then "
            f"the largest append), so it was not written as it is (extended by mistake, or "
            f"damaged); it is refused unread",
        ) from None


_LEADS_TO_NO_FILE = frozenset({errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG})
"""What ``stat`` answers for a name that leads to no file: a loop of links, a link through a
file, a link to a name too long."""


def not_a_file(path: str) -> str | None:
    """What stands at ``path`` when it is not a regular file, or a link to one: "a directory",
    "a symbolic link to nothing", "nothing" (no such name)...; None for a regular file.

    Raises the ``OSError`` of a ``stat`` that fails for another reason (``PermissionError``
    for a directory this process may not search, say): that says nothing about what is there.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if os.path.islink(path) else "nothing"
    except OSError as error:
        if error.errno not in _LEADS_TO_NO_FILE:
            raise
        return f"a path that leads to no file ({error.strerror})"
    if S_ISREG(mode):
        return None
    return "a directory" if S_ISDIR(mode) else "not a regular file"
