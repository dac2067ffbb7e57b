"""Undoing a batch whose publishing failed: the index is left as it was before the batch.

``unpublish`` is a pure function over the index, so it is checked here without files: a
batch is published by hand (as the committer does, up to where it failed) and taken out.
A failed journal still answers reads from this index, and only a rolled-back index keeps
them to what was acknowledged.
"""

from __future__ import annotations

from array import array

import anyio
import pytest

from journals._commit_failure import unpublish
from journals._committer import Batch
from journals._index import JournalIndex, SegmentIndex

HASH_BEFORE = b"\x01" * 32
HASH_AFTER = b"\x02" * 32


def _committed_index() -> JournalIndex:
    """Positions 1 (stream a) and 2 (stream b), one batch of 100 bytes in one segment."""
    index = JournalIndex()
    segment = SegmentIndex("00000000000000000001.seg", 1, array("I", [64, 110]), 221, HASH_BEFORE)
    segment.commits.append(156)
    index.add_segment(segment)
    index.add_stream_positions("a", array("Q", [1]))
    index.add_stream_positions("b", array("Q", [2]))
    return index


def _state(index: JournalIndex) -> object:
    segments = [
        (s.first_position, list(s.offsets), list(s.commits), s.durable_end, s.final_hash)
        for s in index.segments
    ]
    streams = {stream: list(positions) for stream, positions in index.streams.items()}
    return segments, streams, index.head_position, [s.first_position for s in index.segments]


def _batch() -> Batch:
    """Positions 3 to 5: one event of stream a, then two of a new stream c."""
    batch = Batch(3, anyio.Event())
    batch.run_streams.extend(["a", "c"])
    batch.run_firsts.extend([3, 4])
    return batch


def _publish_streams(index: JournalIndex, streams: list[str]) -> None:
    """Publish the batch's positions of ``streams`` (the committer stops where it failed)."""
    for stream in streams:
        index.add_stream_positions(stream, array("Q", [3] if stream == "a" else [4, 5]))
    index.head_position = 5


@pytest.mark.parametrize(
    ("commit_recorded", "published_streams"),
    [(False, []), (True, []), (True, ["a"]), (True, ["a", "c"])],
)
def test_a_batch_in_the_same_segment_is_taken_out(
    commit_recorded: bool, published_streams: list[str]
) -> None:
    index = _committed_index()
    before = _state(index)
    segment = index.segments[-1]
    segment.offsets.extend([221, 260, 300])
    if commit_recorded:  # Else it failed just after the offsets: the last commit is not its.
        segment.commits.append(340)
        segment.durable_end, segment.final_hash = 397, HASH_AFTER
    _publish_streams(index, published_streams)
    unpublish(index, _batch(), 221, HASH_BEFORE, rolled=False)
    assert _state(index) == before
    assert index.version("a") == 1
    assert index.segment_of(2).span(2) == (110, 221)


@pytest.mark.parametrize("segment_added", [False, True])
def test_a_batch_that_began_a_segment_is_taken_out_with_it(segment_added: bool) -> None:
    # The new segment's file stays (the next open finds the batch in it); the index forgets it.
    index = _committed_index()
    before = _state(index)
    if segment_added:
        new = SegmentIndex("00000000000000000003.seg", 3, array("I"), 64, HASH_BEFORE)
        index.add_segment(new)
        new.offsets.extend([64, 103, 143])
        new.commits.append(183)
        new.durable_end, new.final_hash = 240, HASH_AFTER
        _publish_streams(index, ["a"])
    unpublish(index, _batch(), 64, HASH_BEFORE, rolled=True)
    assert _state(index) == before
    assert index.segment_of(5) is index.segments[0]
