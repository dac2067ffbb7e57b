"""What the read-only tools leave out at the end of a journal (``journals/_left_out.py``),
decided from a segment's scan alone, and how ``verify_journal`` words an unfinished end: as
what a crash left, or, while a journal holds the lock, as what it is writing."""

from __future__ import annotations

import fcntl
import os
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from journals import FileJournal, NewEvent, read_journal_files, verify_journal
from journals._codec import COMMIT_FRAME_BYTES, SEGMENT_HEADER_BYTES
from journals._left_out import durable_events, left_out_at_the_end
from journals._recovery import SegmentScan, TornTail

from .journal_files import without_clean_close

EVENT_BYTES = 100
STREAMS = ["s-1", "s-2", "s-3"]


def _scan(first_position: int, batches: list[list[str]], tail: TornTail | None) -> SegmentScan:
    """A segment scan of these batches (each a list of the stream ids of its events)."""
    offsets: array[int] = array("I")
    commits: array[int] = array("I")
    streams: dict[bytes, array[int]] = {}
    offset = SEGMENT_HEADER_BYTES
    position = first_position
    for batch in batches:
        for stream in batch:
            offsets.append(offset)
            streams.setdefault(stream.encode(), array("Q")).append(position)
            offset += EVENT_BYTES
            position += 1
        commits.append(offset)
        offset += COMMIT_FRAME_BYTES
    return SegmentScan(
        "segment.log", first_position, offsets, streams, offset, b"\0" * 32, tail,
        len(batches), commits,
    )  # fmt: skip


batches_strategy = st.lists(st.lists(st.sampled_from(STREAMS), min_size=1, max_size=4), max_size=5)


@given(
    first_position=st.integers(1, 1000),
    batches=batches_strategy,
    from_position=st.integers(1, 1030),
    stream_id=st.none() | st.sampled_from([*STREAMS, "s-9"]),
)
def test_of_an_open_journal_the_last_batch_is_left_out_and_its_asked_events_counted(
    first_position: int, batches: list[list[str]], from_position: int, stream_id: str | None
) -> None:
    scan = _scan(first_position, batches, None)
    left_out = left_out_at_the_end(
        scan, None, True, from_position=from_position, stream_id=stream_id
    )
    if not batches:
        assert left_out == ()
        return
    durable = sum(len(batch) for batch in batches[:-1])
    assert durable_events(scan, None, True) == durable
    assert durable_events(scan, None, False) == len(scan.offsets)
    (batch,) = left_out
    assert batch.journal_open
    assert batch.offset == scan.offsets[durable]
    assert batch.offset + batch.bytes_left_out == scan.durable_end
    # The events asked for, counted one by one.
    last_positions = range(first_position + durable, first_position + len(scan.offsets))
    asked = [
        position
        for position, stream in zip(last_positions, batches[-1], strict=True)
        if position >= from_position and stream_id in (None, stream)
    ]
    assert batch.events == len(asked)


@given(
    first_position=st.integers(1, 1000),
    batches=batches_strategy,
    torn_tail=st.booleans(),
    torn_creation=st.booleans(),
)
def test_no_committed_batch_is_left_out_when_bytes_follow_the_last_one(
    first_position: int, batches: list[list[str]], torn_tail: bool, torn_creation: bool
) -> None:
    """Of a journal that is closed, nothing committed is left out; of one that is open, the
    last batch is durable when bytes follow it, since the journal writes the next batch (or
    creates the next segment) only once that batch's fdatasync returned."""
    tail = TornTail("segment.log", 7, 3, "partial record") if torn_tail else None
    dropped = TornTail("next.log", 0, 5, "incomplete header") if torn_creation else None
    assume(tail or dropped)
    scan = _scan(first_position, batches, tail)
    for is_open in (False, True):
        assert durable_events(scan, dropped, is_open) == len(scan.offsets)
        left_out = left_out_at_the_end(scan, dropped, is_open)
        torn = [(item.path, item.offset, item.bytes_left_out, item.events) for item in left_out]
        expected = [("segment.log", 7, 3, 0), ("next.log", 0, 5, 0)]
        assert torn == [
            item for item, there in zip(expected, (tail, dropped), strict=True) if there
        ]
        assert all(item.journal_open == is_open for item in left_out)
        if not (tail and dropped):
            continue
        said = [str(item) for item in left_out]
        if is_open:
            assert all("the journal is open" in line for line in said), said
        else:
            assert "a torn tail a crash left (partial record)" in said[0]
            assert "as a crash while creating it leaves it" in said[1]


def _crashed_journal(directory: Path) -> None:
    """A journal of two events and a snapshot, as a crash leaves it: no clean-close record."""

    async def write() -> None:
        async with FileJournal(directory) as journal:
            for _ in range(2):
                await journal.append("s-1", [NewEvent("E", {})], expected_version=None)
            await journal.save_snapshot("s-1", 2, {"at": 2})

    anyio.run(write)
    without_clean_close(directory)


def _tear(directory: Path, what: str) -> None:
    """Leave the unfinished end ``what`` a write cut short leaves."""
    if what == "segment tail":
        with (directory / f"{1:020d}.log").open("ab") as file:
            file.write(b"\x30\x00\x00\x00\x01\x02")
    elif what == "segment creation":
        (directory / f"{3:020d}.log").write_bytes(b"EVFLD")
    elif what == "snapshot header":
        (directory / "snapshots.dat").write_bytes(b"EVF")
    else:
        snapshots = directory / "snapshots.dat"
        snapshots.write_bytes(snapshots.read_bytes()[:-3])


@contextmanager
def _lock_held(directory: Path) -> Iterator[None]:
    """Hold the journal's lock as a journal that has it open does (another open file, so the
    tools' probe finds it held)."""
    fd = os.open(directory / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("what", "when_closed", "when_open"),
    [
        ("segment tail", "; opening the journal cuts it", ": a batch the journal is writing"),
        ("segment creation", "; opening the journal removes it", ": one the journal is creating"),
        ("snapshot header", "; opening writes the header again", ": the journal is creating the"),
        ("snapshot tail", "; opening cuts it", ": a snapshot the journal is saving"),
    ],
)
def test_verify_says_an_unfinished_end_is_being_written_only_when_the_journal_is_open(
    tmp_path: Path, what: str, when_closed: str, when_open: str
) -> None:
    _crashed_journal(tmp_path)
    _tear(tmp_path, what)
    closed = verify_journal(tmp_path)
    with _lock_held(tmp_path):
        opened = verify_journal(tmp_path)
    for report, prefix, said in [
        (closed, "left by a crash, not damage: ", when_closed),
        (
            opened,
            "the journal is open (a process holds its lock), and this is not damage: ",
            when_open,
        ),
    ]:
        assert report.intact, report.problem
        (note,) = report.notes
        assert note.startswith(prefix), note
        assert said in note, note
        assert len(report.torn_tails) == 1


def test_a_listing_keeps_what_it_left_out_once_it_ended(tmp_path: Path) -> None:
    _crashed_journal(tmp_path)
    _tear(tmp_path, "segment tail")
    listing = read_journal_files(tmp_path)
    assert not listing.left_out  # Known once every event was yielded.
    assert [event.position for event in listing] == [1, 2]
    (torn,) = listing.left_out
    assert (torn.bytes_left_out, torn.events, torn.journal_open) == (6, 0, False)
    assert next(listing, None) is None  # Asked again: still ended, and still says so.
    assert listing.left_out == (torn,)
