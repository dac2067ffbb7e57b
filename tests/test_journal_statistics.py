"""A journal's figures read often: ``index_bytes``, the size of a FileJournal's index, counted
without a walk over its streams (a journal may hold millions of them) and equal to what a walk
adds up after appends, rolls, a failed batch and reopening; and the time its batches' writes
and fsyncs took."""

from __future__ import annotations

import sys
import time
from array import array
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import FileJournal, Journal, MemoryJournal, NewEvent
from journals._commit_failure import unpublish
from journals._committer import Batch
from journals._index import JournalIndex, SegmentIndex
from journals.testing import FileIO

from .examples import examples
from .test_unpublish import _batch, _committed_index, _publish_streams
from .unwalked import Unwalked


def walked_nbytes(index: JournalIndex) -> int:
    """The index's size as a walk over every stream and segment finds it: the dictionary and
    the list, each stream's id and positions (header and items; not the arrays' spare
    capacity), each segment's offsets and the fixed size of its entry."""
    positions_header = sys.getsizeof(array("Q"))
    total = sys.getsizeof(index.streams) + sys.getsizeof(index.segments)
    for stream_id, positions in index.streams.items():
        total += sys.getsizeof(stream_id) + positions_header + positions.itemsize * len(positions)
    for segment in index.segments:
        total += sys.getsizeof(segment.offsets) + 64
    return total


async def _append(journal: Journal, streams: list[str]) -> None:
    for stream_id in streams:
        await journal.append(stream_id, [NewEvent("E/1", {"n": 1})], expected_version=None)


@pytest.mark.anyio
async def test_index_bytes_does_not_walk_the_streams(tmp_path: Path) -> None:
    async with FileJournal(tmp_path / "journal") as journal:
        await _append(journal, [f"stream-{number}" for number in range(100)])
        index = journal._readable().index
        streams = index.streams = Unwalked("the index's streams", index.streams)
        streams.armed = True
        statistics = journal.statistics()
        streams.armed = False
        assert statistics.index_bytes == walked_nbytes(index)


@pytest.mark.parametrize("published", [["a"], ["a", "c"]])
def test_index_bytes_after_a_failed_batch_is_that_of_the_index_before_it(
    published: list[str],
) -> None:
    index = _committed_index()
    before = index.nbytes()
    assert before == walked_nbytes(index)
    batch: Batch = _batch()
    _publish_streams(index, published)  # Publishing stopped after these streams.
    unpublish(index, batch, 221, b"\x01" * 32, rolled=False)
    assert index.nbytes() == walked_nbytes(index) == before


streams_written = st.lists(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=20),
    min_size=1,
    max_size=6,
)


@settings(max_examples=examples(25), deadline=None)
@given(rounds=streams_written)
def test_index_bytes_is_what_a_walk_finds_after_appends_rolls_and_reopening(
    tmp_path_factory: pytest.TempPathFactory, rounds: list[list[int]]
) -> None:
    directory = tmp_path_factory.mktemp("journal")

    async def run() -> None:
        for numbers in rounds:  # Each round in a journal opened again.
            async with FileJournal(directory, segment_bytes_max=4096) as journal:
                index = journal._readable().index
                assert journal.statistics().index_bytes == walked_nbytes(index)
                async with anyio.create_task_group() as tg:  # Batches of several streams.
                    for number in numbers:
                        tg.start_soon(_append, journal, [f"s-{number}"])
                assert journal.statistics().index_bytes == walked_nbytes(index)
                # What the count relies on: each position is in one stream's positions.
                assert sum(map(len, index.streams.values())) == index.head_position

    anyio.run(run)


def test_a_segment_of_the_index_counts_its_offsets() -> None:
    index = JournalIndex()
    segment = SegmentIndex("00000000000000000001.seg", 1, array("I", [64, 110]), 221, b"")
    index.add_segment(segment)
    index.add_stream_positions("a", array("Q", [1, 2]))
    assert index.nbytes() == walked_nbytes(index)


class SlowSyncs(FileIO):
    """A file layer whose syncs take at least ``SYNC_S`` each."""

    def fdatasync(self, fd: int) -> None:
        time.sleep(SYNC_S)
        super().fdatasync(fd)


SYNC_S = 0.01


@pytest.mark.anyio
async def test_the_time_of_the_batches_writes_and_fsyncs_is_counted(tmp_path: Path) -> None:
    async with FileJournal(tmp_path / "slow", file_io=SlowSyncs()) as journal:
        async with anyio.create_task_group() as tg:
            for number in range(5):
                tg.start_soon(_append, journal, [f"s-{number}", f"t-{number}"])
        slow = journal.statistics()
    assert slow.batch_fsyncs >= 2
    assert slow.batch_sync_s >= SYNC_S * slow.batch_fsyncs
    assert slow.batch_sync_latency_s == slow.batch_sync_s / slow.batch_fsyncs
    async with FileJournal(tmp_path / "unsynced", durable=False) as journal:
        await _append(journal, ["s"])
        unsynced = journal.statistics()
    async with MemoryJournal() as memory:
        await _append(memory, ["s"])
        in_memory = memory.statistics()
    for figures in (unsynced, in_memory):
        assert (figures.batch_sync_s, figures.batch_sync_latency_s) == (0.0, 0.0)
