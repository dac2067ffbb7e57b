"""A journal of many segments holds a bounded number of open files, and reads them all."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent
from journals._segment_files import SEGMENT_FILES_OPEN_MAX, SegmentFiles, SegmentNotOpen

SEGMENTS = SEGMENT_FILES_OPEN_MAX + 72


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


async def _check_reads(journal: FileJournal) -> None:
    async def read_stream(stream: str) -> None:
        events = [event async for event in journal.read(stream)]
        assert [event.data["n"] for event in events] == list(range(len(events)))
        assert len(events) == SEGMENTS // 2

    events = [event async for event in journal.read_all()]
    assert [event.position for event in events] == list(range(1, SEGMENTS + 1))
    async with anyio.create_task_group() as group:
        for stream in ("even", "odd", "even", "odd"):
            group.start_soon(read_stream, stream)


@pytest.mark.anyio
async def test_a_journal_of_more_segments_than_it_keeps_open_rolls_reopens_and_reads(
    tmp_path: Path,
) -> None:
    """One open file per segment ran a long-lived journal into the process's limit of open
    files: a roll failed the journal, and then it could not be opened again."""
    before = _open_files()
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096, durable=False) as j:
        for n in range(SEGMENTS):
            stream = ("even", "odd")[n % 2]
            await j.append(
                stream, [NewEvent("E", {"n": n // 2, "pad": "x" * 4000})], expected_version=n // 2
            )
        assert j.recovery_report.segments == 1
        assert _open_files() - before <= SEGMENT_FILES_OPEN_MAX + 8
        await _check_reads(j)
        assert _open_files() - before <= SEGMENT_FILES_OPEN_MAX + 8
    assert _open_files() == before
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096) as j:
        assert j.recovery_report.segments == SEGMENTS
        assert _open_files() - before <= SEGMENT_FILES_OPEN_MAX + 8
        await _check_reads(j)
    assert _open_files() == before


def test_only_the_loops_thread_closes_a_file_and_never_one_a_reader_thread_uses(
    tmp_path: Path,
) -> None:
    paths: list[str] = []
    for first in (1, 2, 3):
        segment = tmp_path / f"{first}.log"
        segment.write_bytes(bytes([first]) * 8)
        paths.append(str(segment))
    files = SegmentFiles(open_max=2)
    for first, name in enumerate(paths, start=1):
        files.add(first, name)
    one = files.acquire(1)
    again = files.acquire(1)
    assert again == one
    files.release(fd=files.acquire(2))
    # A reader thread opens segment 3: segment 1, the least recently used, leaves the open
    # set, but a reader thread never closes a file (a read on the loop's thread may use it).
    files.release(fd=files.acquire(3))
    assert files.open_count() == 3
    files.release(one)
    files.collect()
    assert os.pread(one, 1, 0) == b"\x01"  # One read still uses it: collect leaves it.
    files.release(one)
    assert files.open_count() == 3  # Retired, not closed by the thread's release.
    files.collect()
    assert files.open_count() == 2
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(one)
    # The loop's thread never opens a file: a read there goes to a reader thread.
    with pytest.raises(SegmentNotOpen):
        files.acquire_on_loop(1)
    assert os.pread(files.acquire_on_loop(3), 1, 0) == b"\x03"
    os.remove(paths[0])
    with pytest.raises(JournalCorrupted, match="segment file is gone"):
        files.acquire(1)
    files.close()
    assert files.open_count() == 0


def test_a_file_the_loop_evicts_is_closed_at_once_unless_a_reader_thread_uses_it(
    tmp_path: Path,
) -> None:
    paths: list[str] = []
    for first in (1, 2, 3, 4):
        segment = tmp_path / f"{first}.log"
        segment.write_bytes(bytes([first]) * 8)
        paths.append(str(segment))
    files = SegmentFiles(open_max=2)
    fds = [os.open(path, os.O_RDONLY) for path in paths]
    files.add(1, paths[0], fds[0])
    files.add(2, paths[1], fds[1])
    used = files.acquire(1)
    files.add(3, paths[2], fds[2])  # A roll on the loop's thread: 1 leaves, in use: retired.
    assert os.pread(used, 1, 0) == b"\x01"
    files.add(4, paths[3], fds[3])  # 2 leaves, not in use: closed at once.
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fds[1])
    assert files.open_count() == 3
    files.release(used)
    assert files.acquire_on_loop(4) == fds[3]  # A read on the loop's thread collects.
    assert files.open_count() == 2
    files.close()


SPREAD = 2 * SEGMENT_FILES_OPEN_MAX + 150


async def _write_spread_stream(path: Path) -> None:
    """A stream ``sparse`` with one event in each of ``SPREAD`` segments (filled by another)."""
    async with FileJournal(path, segment_bytes_max=4096, durable=False) as journal:
        for n in range(SPREAD):
            await journal.append("sparse", [NewEvent("E", {"n": n})], expected_version=n)
            await journal.append("filler", [NewEvent("F", {"pad": "x" * 3900})], expected_version=n)


@pytest.mark.anyio
async def test_a_stream_spread_over_many_segments_is_read_with_a_bounded_number_of_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader thread leaves the files it opens for the loop's thread to close after the read,
    so a read of a stream with one event in each of 1,500 segments opened 1,500 files and
    failed with ``Too many open files`` under the usual limit of 1,024."""
    await _write_spread_stream(tmp_path / "journal")
    peak = 0
    acquire = SegmentFiles.acquire

    def counted(files: SegmentFiles, first_position: int) -> int:
        nonlocal peak
        fd = acquire(files, first_position)
        peak = max(peak, files.open_count())
        return fd

    monkeypatch.setattr(SegmentFiles, "acquire", counted)
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096) as journal:
        assert journal.recovery_report.segments > SPREAD
        events = [event.data["n"] async for event in journal.read("sparse")]
        assert events == list(range(SPREAD))
        assert 0 < peak <= 2 * SEGMENT_FILES_OPEN_MAX + 1


@pytest.mark.anyio
async def test_a_failed_read_leaves_no_more_files_open_than_the_journal_keeps(
    tmp_path: Path,
) -> None:
    """The files a read's thread opened and retired were closed only after a read that
    succeeded: one that failed left them open until the next read."""
    await _write_spread_stream(tmp_path / "journal")
    before = _open_files()
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096) as journal:
        segments = sorted((tmp_path / "journal").glob("*.log"))
        os.remove(segments[SEGMENT_FILES_OPEN_MAX + 60])
        with pytest.raises(JournalCorrupted, match="segment file is gone"):
            [event async for event in journal.read("sparse")]
        assert _open_files() - before <= SEGMENT_FILES_OPEN_MAX + 8


@pytest.mark.anyio
async def test_a_read_that_finds_the_files_crowded_from_the_start_still_reads_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader thread that stops opening files answers what it read, never nothing: the
    caller asks again from there, one run at a time while the files stay crowded."""
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096) as journal:
        for n in range(6):
            await journal.append("sparse", [NewEvent("E", {"n": n})], expected_version=n)
            await journal.append("filler", [NewEvent("F", {"pad": "x" * 3900})], expected_version=n)

        def would_block(*args: object) -> int:
            raise BlockingIOError  # Every read in a reader thread.

        monkeypatch.setattr(os, "preadv", would_block, raising=False)
        monkeypatch.setattr(SegmentFiles, "crowded", lambda files: True)
        with anyio.fail_after(10):
            events = [event.data["n"] async for event in journal.read("sparse")]
        assert events == list(range(6))
