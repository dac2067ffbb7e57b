"""Child process of the compaction crash test: it kills itself with SIGKILL at a named point
inside a compaction of the snapshot file.

Usage: python -m tests.compaction_crash_child DIRECTORY POINT WHEN. With WHEN ``explicit`` it
opens the journal, appends and saves snapshots (printing ``event STREAM VERSION`` for each
acknowledged append), copies the snapshot file to DIRECTORY.old, prints ``compacting`` and calls
``compact_snapshots()``. With WHEN ``open`` it opens a journal whose snapshot file opening
compacts. The file layer below kills the process at POINT; it prints ``survived`` if it was
never reached. The points: ``created`` (the new file was created), ``half-written`` (half of its
records were written), ``before-sync``, ``before-rename``, ``after-rename``,
``after-directory-sync``.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

import anyio

from journals import FileJournal, NewEvent
from journals import _snapshot_retention as retention
from journals.testing import FileIO

STREAMS = 4
VERSIONS = 24


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(FileIO):
    """Kills the process at ``point`` of a compaction, once ``armed``."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.armed = False
        self.new_fd = -1
        self.renamed = False

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if self.armed and path.endswith("snapshots.dat.tmp"):
            self.new_fd = fd
            if self.point == "created":
                _die()
        return fd

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if fd == self.new_fd and self.point == "half-written" and offset > 0:
            written = super().pwrite(fd, memoryview(data)[: len(data) // 2], offset)
            _die()
            return written
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        if fd == self.new_fd and self.point == "before-sync":
            _die()
        super().fsync(fd)

    def replace(self, source: str, target: str) -> None:
        if self.armed and self.point == "before-rename":
            _die()
        super().replace(source, target)
        self.renamed = True
        if self.armed and self.point == "after-rename":
            _die()

    def fsync_directory(self, path: str) -> None:
        super().fsync_directory(path)
        if self.renamed and self.point == "after-directory-sync":
            _die()


async def fill(journal: FileJournal, say: bool) -> None:
    for version in range(1, VERSIONS + 1):
        for stream in range(STREAMS):
            await journal.append(
                f"s{stream}", [NewEvent("E", {"v": version})], expected_version=version - 1
            )
            if say:
                sys.stdout.write(f"event s{stream} {version}\n")
                sys.stdout.flush()
            await journal.save_snapshot(f"s{stream}", version, {"at": version, "pad": "p" * 64})


async def main(directory: str, point: str, when: str) -> None:
    file_io = KillAt(point)
    if when == "open":
        retention.COMPACT_DEAD_BYTES_MIN = 1  # The test's small file is worth compacting.
        file_io.armed = True
        async with FileJournal(directory, file_io=file_io):
            pass
    else:
        async with FileJournal(directory, file_io=file_io) as journal:
            await fill(journal, say=True)
            shutil.copyfile(os.path.join(directory, "snapshots.dat"), directory + ".old")
            sys.stdout.write("compacting\n")
            sys.stdout.flush()
            file_io.armed = True
            await journal.compact_snapshots()
    sys.stdout.write("survived\n")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3])
