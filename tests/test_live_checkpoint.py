"""A checkpoint of a journal that is open, and what ``inspect`` lists of it, leave out the
batch that may be in flight.

A batch's bytes can be complete in the file before its fdatasync returned; a power cut then
may lose them, and a checkpoint that anchored them would call the untouched journal cut (a
listing would show events that never were). The test file layer below holds the sync of one
batch, so the export runs exactly while that batch is written and not yet durable.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from journals import (
    Checkpoint,
    FileJournal,
    JournalCorrupted,
    LeftOut,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_checkpoint,
)
from journals.testing import FileIO


class HeldSync(FileIO):
    """Holds the fdatasync of the segment while ``held``, until ``release``."""

    def __init__(self) -> None:
        self.held = False
        self.writing = threading.Event()
        self.released = threading.Event()

    def fdatasync(self, fd: int) -> None:
        if self.held:
            self.writing.set()
            self.released.wait()
        super().fdatasync(fd)


async def _append(journal: FileJournal, number: int) -> None:
    await journal.append("s", [NewEvent("T", {"n": number})], expected_version=None)


def _export_while_a_batch_is_in_flight(
    directory: Path, appends_before: int
) -> tuple[Checkpoint, Checkpoint, int]:
    """Export while the next append's batch waits for its sync; answer that checkpoint, the
    one after the journal closed, and the segment's size before the held batch."""
    file_io = HeldSync()

    async def run() -> tuple[Checkpoint, int]:
        async with FileJournal(directory, file_io=file_io) as journal:
            for number in range(appends_before):
                await _append(journal, number)
            durable_size = (directory / "00000000000000000001.log").stat().st_size
            file_io.held = True
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_append, journal, appends_before)
                await anyio.to_thread.run_sync(file_io.writing.wait)
                live = export_checkpoint(directory)
                file_io.held = False
                file_io.released.set()
        return live, durable_size

    live, durable_size = anyio.run(run)
    return live, export_checkpoint(directory), durable_size


def test_the_batch_whose_sync_has_not_returned_is_left_out(tmp_path: Path) -> None:
    live, closed, durable_size = _export_while_a_batch_is_in_flight(tmp_path / "journal", 3)
    assert live.position == 3
    assert closed.position == 4
    # What a power cut during that sync may leave: the file as of the last sync.
    after_power_cut = tmp_path / "after power cut"
    shutil.copytree(tmp_path / "journal", after_power_cut)
    (after_power_cut / "closed-cleanly").unlink()
    segment = after_power_cut / "00000000000000000001.log"
    segment.write_bytes(segment.read_bytes()[:durable_size])
    verify_checkpoint(after_power_cut, live)
    verify_checkpoint(tmp_path / "journal", live)  # And it holds for the journal as it is.
    with pytest.raises(JournalCorrupted, match="history was cut"):
        verify_checkpoint(after_power_cut, closed)  # The checkpoint taken after the sync.


def test_with_only_the_batch_in_flight_the_checkpoint_is_the_empty_history(
    tmp_path: Path,
) -> None:
    live, closed, _ = _export_while_a_batch_is_in_flight(tmp_path, 0)
    assert live == Checkpoint(0, "00" * 32)
    assert closed.position == 1
    # What it left out is said, so that it is not taken for the checkpoint of an empty journal.
    (batch,) = live.left_out
    assert (batch.events, batch.journal_open, batch.offset) == (1, True, 64)
    assert "last batch (1 event, position 1)" in str(batch)
    assert closed.left_out == ()
    verify_checkpoint(tmp_path, live)


def test_a_closed_journal_is_checkpointed_to_its_last_batch(tmp_path: Path) -> None:
    async def write() -> None:
        async with FileJournal(tmp_path) as journal:
            for number in range(3):
                await _append(journal, number)

    anyio.run(write)
    assert (tmp_path / "lock").exists()  # Left by the journal; nobody holds it now.
    assert export_checkpoint(tmp_path).position == 3


def test_an_open_journal_with_no_batch_is_checkpointed_as_the_empty_history(
    tmp_path: Path,
) -> None:
    async def export_while_open() -> Checkpoint:
        async with FileJournal(tmp_path):
            return export_checkpoint(tmp_path)

    assert anyio.run(export_while_open) == Checkpoint(0, "00" * 32)


def test_a_commit_record_that_changed_while_read_is_reported_as_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of an open journal, the checkpoint is read from the commit record of the batch before
    the last: when the bytes read there no longer are one, the refusal names where."""

    async def export_while_open() -> None:
        async with FileJournal(tmp_path) as journal:
            for number in range(3):
                await _append(journal, number)
            monkeypatch.setattr(os, "pread", lambda fd, n, offset: bytes(n))
            with pytest.raises(JournalCorrupted, match="it changed while read") as changed:
                export_checkpoint(tmp_path)
            assert changed.value.path == str(tmp_path / "00000000000000000001.log")
            assert changed.value.during == "export"

    anyio.run(export_while_open)


@pytest.mark.parametrize(
    ("appends_before", "pad_bytes"),
    [(0, 0), (3, 0), (4, 1500)],  # 1,500 bytes an event: every second batch opens a segment.
)
def test_a_listing_of_an_open_journal_leaves_out_the_batch_in_flight(
    tmp_path: Path, appends_before: int, pad_bytes: int
) -> None:
    """It listed the batch whose fdatasync had not returned: an event a power cut then may
    take away, which the journal's own reads never show."""
    file_io = HeldSync()

    async def append(journal: FileJournal, number: int) -> None:
        event = NewEvent("T", {"n": number, "pad": "x" * pad_bytes})
        await journal.append("s", [event], expected_version=None)

    async def run() -> tuple[list[int], tuple[LeftOut, ...]]:
        async with FileJournal(tmp_path, file_io=file_io, segment_bytes_max=4096) as journal:
            for number in range(appends_before):
                await append(journal, number)
            file_io.held = True
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(append, journal, appends_before)
                await anyio.to_thread.run_sync(file_io.writing.wait)
                listing = read_journal_files(tmp_path)
                assert listing.left_out == ()  # Known once every event was yielded.
                listed = [event.position for event in listing]
                file_io.held = False
                file_io.released.set()
        return listed, listing.left_out

    listed, left_out = anyio.run(run)
    assert listed == list(range(1, appends_before + 1))
    # What was left out is said: the batch, from its first byte to the end of the segment.
    (batch,) = left_out
    assert (batch.events, batch.journal_open) == (1, True)
    segment = max(tmp_path.glob("*.log"))  # The batch released was the last written.
    assert batch.path == str(segment)
    assert batch.offset + batch.bytes_left_out == segment.stat().st_size
    assert f"last batch (1 event, position {appends_before + 1})" in str(batch)
    if pad_bytes:  # The batch that was in flight is the first of its segment.
        assert max(path.name for path in tmp_path.glob("*.log")) == f"{appends_before + 1:020}.log"
    # Closed, the journal is listed whole.
    closed = [event.position for event in read_journal_files(tmp_path)]
    assert closed == list(range(1, appends_before + 2))
