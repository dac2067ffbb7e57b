"""A failure while the journal rolls to a new segment leaves no descriptor open, and none
closed twice.

A roll opens the new segment for writing and for reading before the batch that starts it is
written; the read descriptor reaches the journal's open files only with the batch's outcome.
A failed directory sync, a failed first write, or a close of the old segment that reports an
error (the descriptor is released all the same) fails the journal, and then its close must
leave the process's descriptors as they were, without closing a number that another file took.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from journals import FileJournal, JournalFailed, NewEvent
from journals.testing import FileIO

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")

STAGES = ["directory sync", "first write", "old segment's close"]


class FailingRoll(FileIO):
    """Fails the next roll at ``stage`` once armed (``old_fd``: the segment being sealed)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.armed = False
        self.old_fd = -1

    def fsync_directory(self, path: str) -> None:
        if self.armed and self.stage == "directory sync":
            self.armed = False
            raise OSError(errno.EIO, "injected: directory sync failed")
        super().fsync_directory(path)

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        if self.armed and self.stage == "first write" and fd != self.old_fd:
            self.armed = False
            raise OSError(errno.ENOSPC, "injected: no space left")
        super().write_durably(fd, data, offset)

    def close(self, fd: int) -> None:
        super().close(fd)
        if self.armed and self.stage == "old segment's close" and fd == self.old_fd:
            self.armed = False
            raise OSError(errno.EIO, "injected: close reported an error")


def _open_descriptors() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.mark.anyio
@pytest.mark.parametrize("stage", STAGES)
async def test_a_failed_roll_leaves_no_descriptor_open_and_closes_none_twice(
    tmp_path: Path, stage: str
) -> None:
    directory = tmp_path / "journal"
    io = FailingRoll(stage)
    pad = "x" * 3000
    before = _open_descriptors()
    async with FileJournal(directory, segment_bytes_max=4096, file_io=io) as journal:
        await journal.append("a", [NewEvent("E", {"pad": pad})], expected_version=0)
        assert journal._opened is not None
        io.old_fd = journal._opened.writer._fd
        io.armed = True
        with pytest.raises(JournalFailed, match="injected"):
            await journal.append("a", [NewEvent("E", {"pad": pad})], expected_version=1)
        assert not io.armed, "the roll did not meet the failure"
        # Files the application opens now take the lowest free numbers, the old segment's
        # too when its close released it: the journal's close must not close them.
        mine = [os.open(tmp_path / "mine", os.O_RDWR | os.O_CREAT) for _ in range(4)]
    try:
        for fd in mine:
            os.fstat(fd)  # Raises EBADF for a file the journal's close closed.
        assert _open_descriptors() == before | set(mine)
    finally:
        for fd in mine:
            os.close(fd)
    async with FileJournal(directory) as journal:
        assert [event.version async for event in journal.read("a")] == [1]
