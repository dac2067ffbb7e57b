"""The bytes of one append and one batch against the 32-bit record offsets of a segment.

A segment's record and commit offsets are kept in 32 bits (``array('I')`` in the index, u32 in
index files). ``SEGMENT_BYTES_MAX`` and ``APPEND_BYTES_MAX`` together keep every offset below
4 GiB; these tests hold the sum to that, and run the logic in a model with 16-bit offsets and
limits scaled down by 2**16, where the largest appends take kilobytes, not gigabytes.
"""

from __future__ import annotations

import array
import functools
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

import journals._committer
import journals._file_writer
import journals._index
import journals._recovery
from journals import (
    EventEncodingError,
    FileJournal,
    JournalCorrupted,
    JournalFailed,
    JournalFailedAfterSync,
    NewEvent,
    verify_journal,
)
from journals._codec import COMMIT_FRAME_BYTES, SEGMENT_HEADER_BYTES
from journals._validation import APPEND_BYTES_MAX, SEGMENT_BYTES_MAX

_SCALE = 1 << 16
"""32-bit offsets in the model are 16-bit: every limit is divided by this."""


def test_the_limits_keep_every_offset_of_a_segment_within_32_bits() -> None:
    # The largest segment: a batch in a segment of its own, after the header, holding less
    # than batch_bytes_max (at most SEGMENT_BYTES_MAX) before its last append, then that
    # append and the batch's commit record. Its commit record's offset is the largest kept.
    largest_end = SEGMENT_HEADER_BYTES + SEGMENT_BYTES_MAX - 1 + APPEND_BYTES_MAX
    assert largest_end + COMMIT_FRAME_BYTES <= 1 << 32
    assert array.array("I").itemsize == 4


@pytest.fixture
def sixteen_bit_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offsets in 16 bits, and the append limit scaled down as much."""
    real = array.array

    def narrow(typecode: str, *args: Any) -> array.array[int]:
        return real("H" if typecode == "I" else typecode, *args)

    for module in (journals._index, journals._recovery, journals._file_writer):
        monkeypatch.setattr(module, "array", narrow)
    monkeypatch.setattr(journals._committer, "APPEND_BYTES_MAX", APPEND_BYTES_MAX // _SCALE)


def _events(count: int, size: int) -> list[NewEvent]:
    """``count`` events whose records take ``size`` bytes each, in a stream of a 2-byte id."""
    return [NewEvent("T", "x" * (size - 8 - 31 - 2 - 1 - 2))] * count


@pytest.mark.anyio
@pytest.mark.usefixtures("sixteen_bit_offsets")
async def test_the_largest_appends_and_batches_fit_the_offsets_in_a_model(
    tmp_path: Path,
) -> None:
    segment = SEGMENT_BYTES_MAX // _SCALE  # 32 KiB, the largest segment_bytes_max scaled
    limit = APPEND_BYTES_MAX // _SCALE  # 16 KiB
    journal = FileJournal(tmp_path, segment_bytes_max=segment, batch_bytes_max=segment)
    async with journal:
        # Appends of the limit, many at once: batches of up to batch_bytes_max plus one more.
        async with anyio.create_task_group() as group:
            for number in range(24):
                append = functools.partial(journal.append, expected_version=0)
                group.start_soon(append, f"{number:02d}", _events(8, limit // 8))
        # Over 64 KiB: some of its offsets would not fit in 16 bits, even in a segment of its
        # own. Refused before anything is placed, rather than written and then not indexable.
        with anyio.fail_after(10), pytest.raises(EventEncodingError, match="at most 16,384"):
            await journal.append("bi", _events(8, limit // 2 + 1024), expected_version=0)
        await journal.append("af", _events(1, 100), expected_version=0)
        head = await journal.head_position()
    assert head == 24 * 8 + 1
    async with FileJournal(tmp_path, segment_bytes_max=segment) as reopened:
        assert await reopened.head_position() == head
        assert await reopened.stream_version("bi") == 0


@pytest.mark.anyio
@pytest.mark.parametrize("batch_bytes_max", [1, 1 << 20])
async def test_a_refused_append_takes_back_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes_max: int
) -> None:
    # batch_bytes_max=1: the refused append opened a batch of its own, which goes too.
    monkeypatch.setattr(journals._committer, "APPEND_BYTES_MAX", 1000)
    async with FileJournal(tmp_path, batch_bytes_max=batch_bytes_max) as journal:
        first = journal.start_append("aa", _events(2, 200), expected_version=0)
        with pytest.raises(EventEncodingError, match="the append's 6 events take 1,200 bytes"):
            journal.start_append("bb", _events(6, 200), expected_version=0)
        with pytest.raises(EventEncodingError, match="the append's 6 events take 1,200 bytes"):
            journal.start_append("aa", _events(6, 200), expected_version=2)
        second = journal.start_append("aa", _events(1, 200), expected_version=2)
        assert first is not None
        assert second is not None
        for durable, outcome, _, _ in (first, second):
            await durable
            outcome.raise_error()
        assert (first[2:], second[2:]) == ((2, 2), (3, 3))
        assert await journal.stream_version("bb") == 0
        assert [event.position async for event in journal.read_all()] == [1, 2, 3]
        assert journal.statistics().appends == 2


@pytest.mark.anyio
async def test_a_queued_append_too_large_is_refused_when_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journals._committer, "APPEND_BYTES_MAX", 1000)
    async with FileJournal(tmp_path, queue_bytes_max=1) as journal:
        started = journal.start_append("aa", _events(1, 200), expected_version=0)
        assert started is not None  # The queue is full from here until it is written.
        outcomes: dict[str, object] = {}

        async def append(stream: str, events: list[NewEvent]) -> None:
            try:
                outcomes[stream] = await journal.append(stream, events, expected_version=0)
            except EventEncodingError as error:
                outcomes[stream] = error

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(append, "bi", _events(6, 200))
                await anyio.wait_all_tasks_blocked()
                group.start_soon(append, "cc", _events(1, 200))
                await started[0]
        assert isinstance(outcomes["bi"], EventEncodingError)
        assert [event.stream_id async for event in journal.read_all()] == ["aa", "cc"]
        await journal.append("dd", _events(1, 200), expected_version=0)


@pytest.mark.anyio
@pytest.mark.usefixtures("sixteen_bit_offsets")
@pytest.mark.parametrize("rolled", [False, True])
async def test_a_batch_beyond_the_offsets_fails_the_journal_and_refuses_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rolled: bool
) -> None:
    # An earlier version without the append limit, in the model: the batch is written and
    # synced, then its offsets do not fit the index (OverflowError while it is published).
    monkeypatch.setattr(journals._committer, "APPEND_BYTES_MAX", 1 << 30)
    segment = SEGMENT_BYTES_MAX // _SCALE
    large = _events(8, APPEND_BYTES_MAX // _SCALE // 2 + 1024)  # Over 64 KiB of records.
    async with FileJournal(tmp_path, segment_bytes_max=segment) as journal:
        if rolled:  # The large batch starts a segment of its own.
            await journal.append("sm", _events(1, 100), expected_version=0)
        before = await journal.head_position()
        with anyio.fail_after(10), pytest.raises(JournalFailedAfterSync) as failed:
            await journal.append("bi", large, expected_version=0)
        assert isinstance(failed.value.__cause__, OverflowError)
        # Reads show what was acknowledged before, and nothing of the batch.
        assert await journal.head_position() == before
        assert await journal.stream_version("bi") == 0
        assert [event.stream_id async for event in journal.read_all()] == ["sm"] * before
        with pytest.raises(JournalFailed, match="failed earlier"):
            await journal.append("af", _events(1, 100), expected_version=0)
    assert not (tmp_path / "closed-cleanly").exists()
    # Opening refuses it with what happened and what to do, not with a bare OverflowError.
    with pytest.raises(JournalCorrupted, match="1 GiB limit on one append") as refused:
        await FileJournal(tmp_path, segment_bytes_max=segment).__aenter__()
    assert refused.value.path.endswith(f"{before + 1:020d}.log")
    assert f"truncate -s {refused.value.offset}" in str(refused.value)
    assert not verify_journal(tmp_path).intact
    # Following its advice opens the journal without the batch, which nobody was told is
    # acknowledged.
    os.truncate(refused.value.path, refused.value.offset)
    async with FileJournal(tmp_path, segment_bytes_max=segment) as reopened:
        assert await reopened.head_position() == before
        assert await reopened.stream_version("bi") == 0
