"""Test aids for code built on eventfold's journals.

``FaultyFileIO`` is a file layer that fails on purpose. Hand it to a journal with
``FileJournal(path, file_io=FaultyFileIO(...))`` to see what your code does when the disk fails::

    faults = FaultyFileIO()
    async with FileJournal(path, file_io=faults) as journal:
        faults.fail_fsync_after = faults.fsyncs  # from now on, every fsync raises EIO
        await journal.append("order-7", [NewEvent("Placed", {})], expected_version=0)
        # raises JournalFailed, with the OSError as its cause

Its settings are plain attributes, so a test can arm a fault at the moment it chooses, as
here. Its counts start when it is made, and opening a journal syncs files too (a new one
several times, for its directory, first segment and snapshot file): a fault armed when it
is made, such as ``FaultyFileIO(fail_fsync_after=3)``, fails the opening with that
``OSError`` before any append.
``FileIO`` is the plain file layer, to subclass for faults of your own.
"""

from __future__ import annotations

import errno
import os

from ._fileio import FileIO as FileIO

__all__ = ["FaultyFileIO", "FileIO"]


class FaultyFileIO(FileIO):
    """A ``FileIO`` that injects faults. Every limit counts from when the object is created.

    * ``fail_fsync_after``: that many fsync/fdatasync calls succeed, every later one raises EIO.
    * ``enospc_after_bytes``: writes succeed until that many bytes were written in all, then
      write what still fits and raise ENOSPC.
    * ``write_bytes_max``: every write call writes at most that many bytes (short writes).
    * ``crash_after_bytes``: write only up to that many bytes in all, then "crash": that write
      and every later write, sync, truncation or open raises EIO, as if the process had died
      at that byte (reads, renames, removals and closes still run).
    """

    def __init__(
        self,
        *,
        fail_fsync_after: int | None = None,
        enospc_after_bytes: int | None = None,
        write_bytes_max: int | None = None,
        crash_after_bytes: int | None = None,
    ) -> None:
        self.fail_fsync_after = fail_fsync_after
        self.enospc_after_bytes = enospc_after_bytes
        self.write_bytes_max = write_bytes_max
        self.crash_after_bytes = crash_after_bytes
        self.fsyncs = 0
        self.bytes_written = 0
        self.write_calls = 0
        self.crashed = False

    def _check_alive(self) -> None:
        if self.crashed:
            raise OSError(errno.EIO, "simulated crash: the file layer is dead")

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self._check_alive()
        self.write_calls += 1
        view = memoryview(data)
        if self.write_bytes_max is not None:
            view = view[: self.write_bytes_max]
        for limit, code, reason in (
            (self.crash_after_bytes, errno.EIO, "simulated crash"),
            (self.enospc_after_bytes, errno.ENOSPC, "No space left on device (simulated)"),
        ):
            if limit is not None and self.bytes_written + len(view) > limit:
                room = max(0, limit - self.bytes_written)
                if room:
                    self.bytes_written += os.pwrite(fd, view[:room], offset)
                if code == errno.EIO:
                    self.crashed = True
                raise OSError(code, reason)
        written = os.pwrite(fd, view, offset)
        self.bytes_written += written
        return written

    def _sync(self) -> None:
        self._check_alive()
        if self.fail_fsync_after is not None and self.fsyncs >= self.fail_fsync_after:
            raise OSError(errno.EIO, "Input/output error (simulated fsync failure)")
        self.fsyncs += 1

    def fdatasync(self, fd: int) -> None:
        self._sync()
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._sync()
        super().fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._check_alive()
        super().ftruncate(fd, size)

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        self._check_alive()
        return super().open(path, flags, mode)
