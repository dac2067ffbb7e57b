"""What the read-only tools leave out at the end of a journal (``journals/_left_out.py``),
decided from a segment's scan alone: no files, no journal."""

from __future__ import annotations

from array import array

from hypothesis import assume, given
from hypothesis import strategies as st

from journals._codec import COMMIT_FRAME_BYTES, SEGMENT_HEADER_BYTES
from journals._left_out import durable_events, left_out_at_the_end
from journals._recovery import SegmentScan, TornTail

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
