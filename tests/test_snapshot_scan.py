"""Looking for a valid snapshot record after a bad one stays linear on hostile files.

A bad snapshot record is a torn tail only when no valid record follows it; the search for one
must not compute a checksum over a huge claimed length at every offset (durability.md G11).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent, _snapshot_scan, verify_journal
from journals._codec import (
    KIND_SNAPSHOT,
    SNAPSHOT_HEADER,
    encode_snapshot,
    encode_snapshot_file_header,
)

from .journal_files import without_clean_close

_BAD_RECORD = b"\x05\x00\x00\x00\xde\xad\xbe\xef\x03\x00\x00\x00\x00"


def _repeating_lengths(size: int) -> bytes:
    """Every 4th offset reads as a frame of half the file (the review's file)."""
    return struct.pack("<I", size // 2) * (size // 4)


def _planted_snapshot_headers(size: int) -> bytes:
    """Worse: every 30 bytes a frame of half the file whose body starts like a snapshot's."""
    unit = struct.pack("<II", size // 2, 0) + SNAPSHOT_HEADER.pack(KIND_SNAPSHOT, 1, 0, 1, 0)
    return unit * (size // len(unit))


def _make_journal(directory: Path, snapshot_file: bytes) -> None:
    async def write() -> None:
        async with FileJournal(directory) as journal:
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)

    anyio.run(write)
    # The file stands for one a crash left: after a clean close, opening refuses any bad
    # snapshot at the end (test_clean_close), and only a crash leaves a tail to search.
    without_clean_close(directory)
    (directory / "snapshots.dat").write_bytes(snapshot_file)


def _count_checksummed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counted = [0]
    original = _snapshot_scan.crc32

    def counting(data: Any, start: int = 0) -> int:
        counted[0] += len(data)
        return original(data, start)

    monkeypatch.setattr(_snapshot_scan, "crc32", counting)
    return counted


async def _open(directory: Path) -> Any:
    async with FileJournal(directory) as journal:
        return journal.recovery_report


@pytest.mark.parametrize(
    ("filler", "refused"),
    [(_repeating_lengths, False), (_planted_snapshot_headers, True)],
)
def test_a_hostile_snapshot_file_costs_checksums_linear_in_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filler: Any, refused: bool
) -> None:
    size = 4 << 20
    contents = encode_snapshot_file_header() + _BAD_RECORD + filler(size)
    _make_journal(tmp_path, contents)
    counted = _count_checksummed_bytes(monkeypatch)
    bound = _snapshot_scan.SEARCH_CHECKSUM_FACTOR * len(contents)
    bound += _snapshot_scan.SEARCH_CHECKSUM_BYTES_MIN

    report = verify_journal(tmp_path)
    found = report.problem if refused else report.torn_tails[0]
    assert found is not None
    assert found.offset == 16
    assert ("torn tail" in found.reason) is not refused
    assert report.intact is not refused
    assert counted[0] <= bound
    counted[0] = 0
    if refused:  # The search gave up: refused as damage, not cut on a guess.
        with pytest.raises(JournalCorrupted, match=r"snapshots\.dat at byte offset 16"):
            anyio.run(_open, tmp_path)
        assert (tmp_path / "snapshots.dat").read_bytes() == contents
    else:  # Nothing valid follows: a torn tail, cut.
        report = anyio.run(_open, tmp_path)
        assert [(tail.offset, tail.bytes_cut) for tail in report.torn_tails] == [
            (16, len(contents) - 16)
        ]
    assert counted[0] <= bound


def test_a_valid_record_after_a_bad_one_is_still_found(tmp_path: Path) -> None:
    good = encode_snapshot(1, 0, b"s", b"", b"1")
    contents = encode_snapshot_file_header() + _BAD_RECORD + b"\x03" * 40 + good
    _make_journal(tmp_path, contents)
    with pytest.raises(JournalCorrupted, match=r"snapshots\.dat at byte offset 16"):
        anyio.run(_open, tmp_path)


@pytest.mark.parametrize("order", [[1, 2, 3, 4, 5, 6], [5, 2, 6, 1, 4, 3], [6, 5, 4, 3, 2, 1]])
def test_snapshots_saved_in_any_order_are_found_by_version_before_and_after_reopening(
    tmp_path: Path, order: list[int]
) -> None:
    directory = tmp_path / "journal"

    async def expect_latest_at_or_below(journal: FileJournal) -> None:
        for max_version in range(1, 8):
            snapshot = await journal.load_snapshot("s", max_version=max_version)
            assert snapshot is not None
            assert snapshot.version == min(max_version, 6)
            assert snapshot.data == {"v": snapshot.version}

    async def run() -> None:
        async with FileJournal(directory) as journal:
            events = [NewEvent("E", {"i": i}) for i in range(6)]
            await journal.append("s", events, expected_version=0)
            for version in order:
                await journal.save_snapshot("s", version, {"v": version})
            await expect_latest_at_or_below(journal)
        async with FileJournal(directory) as journal:  # entries rebuilt from the file
            await expect_latest_at_or_below(journal)

    anyio.run(run)
