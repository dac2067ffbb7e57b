"""The one small class through which FileJournal changes files.

Every write, fdatasync, fsync, ftruncate and file creation of a FileJournal goes through a
``FileIO`` instance, so a test can hand the journal a subclass that injects faults
(``journals.testing.FaultyFileIO``). Methods block: callers run them in a worker thread.
"""

from __future__ import annotations

import errno
import os


class FileIO:
    """Plain OS calls. Subclass and override single methods to inject faults (a test aid)."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write some of ``data`` at ``offset``; answer how many bytes were written."""
        return os.pwrite(fd, data, offset)

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

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove(self, path: str) -> None:
        os.remove(path)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pwrite_all(self, fd: int, data: bytes, offset: int) -> None:
        """Write all of ``data`` at ``offset``, looping over short writes; raise on no progress."""
        view = memoryview(data)
        written = 0
        while written < len(data):
            count = self.pwrite(fd, view[written:], offset + written)
            if count <= 0:
                raise OSError(errno.EIO, f"write made no progress after {written} bytes")
            written += count
