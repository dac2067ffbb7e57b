"""A power cut after a crash and a reopening: what the crash left unsynced must not be lost
once the reopened journal acknowledged more.

A crash (or a failed sync, after which the journal fails and is reopened) can leave a last
batch whose bytes are in the page cache but whose sync never returned, a segment a roll
created whose name was never synced, or a snapshot likewise: opening finds them and keeps
them. The reopened journal's next batch is written with a write that syncs its own bytes only
(``pwritev(..., RWF_DSYNC)``), so unless opening syncs what it kept, a power cut may still
take it away, and with it the chain (or the file) the acknowledged batch hangs from; and a
clean close records the snapshot file's size, snapshot kept included. Runs on
``PowerCutFileIO`` (``tests/power_cut.py``, which states the model)."""

from __future__ import annotations

import errno
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, JournalFailed, NewEvent, read_journal_files

from .power_cut import ImpossibleState, PowerCutFileIO, write_directory


class FailsOneSync(PowerCutFileIO):
    """Records as ``PowerCutFileIO`` does, but while ``failing`` names a sync, that sync fails
    (``"batch"``: a batch's synced write, whose bytes are written; ``"roll"``: the directory
    sync of a roll, whose new segment file is whole but whose name is not yet durable)."""

    failing: str | None = None

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        if self.failing != "batch":
            super().write_durably(fd, data, offset)
            return
        self.pwrite_all(fd, data, offset)  # In the page cache; the sync fails.
        raise OSError(errno.EIO, "the sync never returned")

    def fsync_directory(self, path: str) -> None:
        if self.failing == "roll":
            raise OSError(errno.EIO, "the directory sync never returned")
        super().fsync_directory(path)


SEGMENT_BYTES_MAX = 4096
"""The first event fills a segment: the second append rolls."""


async def _crash_then_reopen_and_append(
    directory: str, io: FailsOneSync, failing: str
) -> tuple[int, list[int]]:
    """Append one event, fail a sync of the second append, reopen, append a third; answer how
    many operations were recorded when the third was acknowledged, and the events the
    reopened journal holds then."""
    pad = "x" * SEGMENT_BYTES_MAX
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 1, "pad": pad})], expected_version=0)
        io.failing = failing
        with pytest.raises(JournalFailed):
            await journal.append("s", [NewEvent("E", {"n": 2})], expected_version=1)
        io.failing = None
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as journal:
        await journal.append("s", [NewEvent("E", {"n": 3})], expected_version=None)
        held = [event.data["n"] async for event in journal.read_all()]
        return len(io.operations), held


@pytest.mark.parametrize(
    ("failing", "held"),
    [
        ("batch", [1, 2, 3]),  # Opening kept the second event: its bytes are whole in the file.
        ("roll", [1, 3]),  # The second went nowhere; the third went to the segment left.
    ],
)
def test_opening_syncs_the_unsynced_end_a_crash_left_before_it_acknowledges(
    tmp_path: Path, failing: str, held: list[int]
) -> None:
    directory = str(tmp_path / "journal")
    io = FailsOneSync(directory)
    acknowledged_at, found = anyio.run(_crash_then_reopen_and_append, directory, io, failing)
    assert found == held
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
            assert listed == held, f"{power_cut.label} at {cut}: acknowledged events lost"
            checked += 1
    assert checked > 0


class FailsSnapshotSync(PowerCutFileIO):
    """Records as ``PowerCutFileIO`` does, but while ``failing``, a sync of the snapshot file
    fails: the snapshot's bytes are whole in the page cache, never synced."""

    failing = False

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self._snapshot_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if path.endswith("snapshots.dat"):
            self._snapshot_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        self._snapshot_fds.discard(fd)
        super().close(fd)

    def fdatasync(self, fd: int) -> None:
        if self.failing and fd in self._snapshot_fds:
            raise OSError(errno.EIO, "the sync never returned")
        super().fdatasync(fd)


async def _snapshot_sync_fails_then_reopen_and_close(directory: str, io: FailsSnapshotSync) -> int:
    """Append two events and snapshot them, failing the snapshot's sync; reopen and close the
    journal cleanly; answer how many operations were recorded when the clean-close record was
    durable."""
    async with FileJournal(directory, file_io=io) as journal:
        await journal.append("s", [NewEvent("E", {"n": n}) for n in (1, 2)], expected_version=0)
        io.failing = True
        with pytest.raises(JournalFailed):
            await journal.save_snapshot("s", 2, {"n": 2})
        io.failing = False
    async with FileJournal(directory, file_io=io) as journal:
        assert await journal.load_snapshot("s") is not None  # Kept: it is whole.
    return len(io.operations)


def test_opening_syncs_a_snapshot_a_crash_left_before_a_clean_close_records_it(
    tmp_path: Path,
) -> None:
    # A clean close records the snapshot file's size, and the next open refuses a file that
    # does not hold that many bytes as damage: the size must not count a snapshot that a
    # power cut could still take away.
    directory = str(tmp_path / "journal")
    io = FailsSnapshotSync(directory)
    closed_at = anyio.run(_snapshot_sync_fails_then_reopen_and_close, directory, io)
    checked = 0
    for number, power_cut in enumerate(io.power_cuts(closed_at)):
        try:
            files = io.files(power_cut)
        except ImpossibleState:
            continue
        assert files is not None
        if "closed-cleanly" not in files:
            continue  # The record was not kept: the open checks the end as after a crash.
        target = tmp_path / f"cut-{number}"
        write_directory(files, str(target))

        async def reopen(target: Path = target) -> list[int]:
            async with FileJournal(target) as journal:
                return [event.data["n"] async for event in journal.read_all()]

        try:
            assert anyio.run(reopen) == [1, 2]
        except JournalCorrupted as error:
            pytest.fail(f"{power_cut.label}: the journal closed cleanly is refused: {error}")
        checked += 1
    assert checked > 0
