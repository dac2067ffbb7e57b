"""A power cut after a crash and a reopening: what the crash left unsynced must not be lost
once the reopened journal acknowledged more.

A crash (or a failed sync, after which the journal fails and is reopened) can leave a last
batch whose bytes are in the page cache but whose sync never returned: opening finds it whole
and keeps it. The reopened journal's next batch is written after it with a write that syncs
its own bytes only (``pwritev(..., RWF_DSYNC)``), so unless opening syncs what it kept, a
power cut may still take the earlier batch away, and with it the chain the acknowledged batch
hangs from. Runs on ``PowerCutFileIO`` (``tests/power_cut.py``, which states the model).
"""

from __future__ import annotations

import errno
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, JournalFailed, NewEvent, read_journal_files

from .power_cut import ImpossibleState, PowerCutFileIO, write_directory


class FailsOneSyncedWrite(PowerCutFileIO):
    """Writes every batch, but the sync of the one written while ``failing`` never returns."""

    failing = False

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        if not self.failing:
            super().write_durably(fd, data, offset)
            return
        self.pwrite_all(fd, data, offset)  # In the page cache; the sync fails.
        raise OSError(errno.EIO, "the sync never returned")


async def _crash_then_reopen_and_append(directory: str, io: FailsOneSyncedWrite) -> int:
    """Append one event, fail the sync of a second, reopen, append a third; answer how many
    operations were recorded when the third was acknowledged."""
    async with FileJournal(directory, file_io=io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1})], expected_version=0)
        io.failing = True
        with pytest.raises(JournalFailed):
            await journal.append("s", [NewEvent("E", {"n": 2})], expected_version=1)
        io.failing = False
    async with FileJournal(directory, file_io=io) as journal:
        # Opening kept the second event: its bytes are whole in the file.
        await journal.append("s", [NewEvent("E", {"n": 3})], expected_version=2)
        return len(io.operations)


def test_opening_syncs_the_unsynced_end_a_crash_left_before_it_acknowledges(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path / "journal")
    io = FailsOneSyncedWrite(directory)
    acknowledged_at = anyio.run(_crash_then_reopen_and_append, directory, io)
    checked = 0
    for cut in range(acknowledged_at, len(io.operations) + 1):
        for number, power_cut in enumerate(io.power_cuts(cut)):
            try:
                files = io.files(power_cut)
            except ImpossibleState:
                continue
            assert files is not None
            target = str(tmp_path / f"cut-{cut}-{number}")
            write_directory(files, target)
            try:
                listed = [event.data["n"] for event in read_journal_files(target)]
            except JournalCorrupted as error:
                pytest.fail(f"{power_cut.label} at {cut}: the journal is refused: {error}")
            assert listed == [1, 2, 3], f"{power_cut.label} at {cut}: acknowledged events lost"
            checked += 1
    assert checked > 0
