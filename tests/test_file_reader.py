"""The FileJournal's read side: the decoder's fast loop against the checked path, the
records it refuses, and the chunks reads build (where reads run: test_file_reader_threads)."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import journals._file_journal as file_journal
from journals import FileJournal, JournalCorrupted, NewEvent
from journals._codec import encode_commit, encode_event, frame
from journals._file_reader import (
    Columns,
    _decode_checked,
    _decode_run,
    _Run,
    _run_end,
)
from journals._types import EMPTY_METADATA, StreamChunk, stream_chunk

from .examples import examples
from .journal_doubles import UnsyncedFileIO


async def _filled(directory: Path) -> tuple[bytes, int]:
    async with FileJournal(directory) as journal:
        for index in range(30):
            metadata = {"by": "ü", "n": index} if index % 3 == 0 else {}
            event = NewEvent("Even" if index % 2 == 0 else "Odd流", {"i": index}, metadata)
            await journal.append(f"s-{index % 4}", [event, event], expected_version=None)
    raw = (directory / "00000000000000000001.log").read_bytes()
    return raw[64:], 60


def _run(raw: bytes, count: int, stream: bytes | None = None) -> _Run:
    return _Run(raw, "segment", 64, 1, count, stream)


def _rows(columns: Columns) -> list[tuple[object, ...]]:
    return list(
        zip(
            columns.streams,
            columns.versions,
            columns.types,
            columns.data,
            columns.metadata,
            columns.timestamps,
            strict=True,
        )
    )


def _stream_rows(columns: Columns) -> list[tuple[object, ...]]:
    """A stream read's rows: its stream and versions are known, so not read into columns."""
    assert columns.streams == []
    assert columns.versions == []
    fields = (columns.types, columns.data, columns.metadata, columns.timestamps)
    return list(zip(*fields, strict=True))


@pytest.mark.anyio
async def test_the_fast_loop_decodes_what_the_checked_path_decodes(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    fast = Columns()
    _decode_run(_run(raw, count), 1, fast)
    checked = Columns()
    _decode_checked(_run(raw, count), 0, 1, 1, checked)
    assert _rows(fast) == _rows(checked)
    assert len(fast.types) == 60
    assert fast.streams[:5] == ["s-0", "s-0", "s-1", "s-1", "s-2"]
    assert fast.versions[:6] == [1, 2, 1, 2, 1, 2]
    assert fast.metadata[0] == {"by": "ü", "n": 0}
    assert fast.metadata[2] == {}
    assert set(fast.types) == {"Even", "Odd流"}


@pytest.mark.anyio
async def test_damage_after_good_records_is_reported_at_its_record(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    good = Columns()
    _decode_run(_run(raw, count), 1, good)
    # The fifth event's frame starts where the checked path says it does; damage its body.
    offsets: list[int] = []
    offset = 0
    while len(offsets) < 5:
        length = int.from_bytes(raw[offset : offset + 4], "little")
        if raw[offset + 8] == 1:
            offsets.append(offset)
        offset += 8 + length
    damaged = bytearray(raw)
    damaged[offsets[4] + 40] ^= 0x01
    columns = Columns()
    with pytest.raises(JournalCorrupted, match="checksum mismatch") as caught:
        _decode_run(_run(bytes(damaged), count), 1, columns)
    assert caught.value.offset == 64 + offsets[4]
    assert _rows(columns) == _rows(good)[:4]


@pytest.mark.anyio
async def test_a_record_of_another_stream_is_refused(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    columns = Columns()
    with pytest.raises(JournalCorrupted, match="record of stream 's-1' where the index says"):
        _decode_run(_run(raw, count, b"s-0"), 1, columns)
    assert columns.data == [{"i": 0}, {"i": 0}]
    assert columns.streams == []
    assert columns.versions == []


@pytest.mark.anyio
async def test_a_record_of_another_version_than_the_index_says_is_refused(
    tmp_path: Path,
) -> None:
    raw, _ = await _filled(tmp_path / "journal")
    columns = Columns()
    with pytest.raises(JournalCorrupted, match="holds version 1 of 's-0' where the index says 2"):
        _decode_run(_run(raw, 2, b"s-0"), 2, columns)
    assert columns.data == []


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [b"s-0", None], ids=["stream read", "read of all"])
async def test_a_record_of_another_position_than_the_index_says_is_refused(
    tmp_path: Path, stream: bytes | None
) -> None:
    # Position 1 (version 1 of s-0) where the index says position 2 (version 2): the version
    # is as far from the position as the index's, so only the position tells them apart.
    raw, _ = await _filled(tmp_path / "journal")
    columns = Columns()
    with pytest.raises(JournalCorrupted, match="holds position 1 where the index says 2") as caught:
        _decode_run(_Run(raw, "segment", 64, 2, 1, stream), 2, columns)
    assert caught.value.offset == 64
    assert columns.data == []


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [b"s-0", None], ids=["stream read", "read of all"])
async def test_a_record_of_another_kind_is_refused_where_it_is(
    tmp_path: Path, stream: bytes | None
) -> None:
    """A valid frame of a kind that is neither event nor commit where the index says an event
    is: the checked path skipped it and blamed the event after it."""
    raw, count = await _filled(tmp_path / "journal")
    length = int.from_bytes(raw[:4], "little")
    body = bytearray(raw[8 : 8 + length])
    body[0] = 3
    forged = frame(bytes(body)) + raw[8 + length :]
    with pytest.raises(JournalCorrupted, match="record kind 3 where an event was") as caught:
        _decode_run(_Run(forged, "segment", 64, 1, count, stream), 1, Columns())
    assert caught.value.offset == 64


# Records of a read: stream ids and type names whose bytes split differently ("ab" +
# "c/1" and "abc" + "/1"), versions and positions that may disagree with the index, metadata
# or none, data that may not be JSON, commit records between, damage and truncation.
stream_records = st.lists(
    st.tuples(
        # Mostly the stream and type read, so that whole runs decode before anything is off.
        st.sampled_from([b"ab"] * 6 + [b"abc", b"a", b"ab\xff"]),
        st.sampled_from([b"c/1"] * 4 + [b"/1c", b"/1", b"c/2", b"\xfe/1"]),
        st.sampled_from([0] * 8 + [1, -1]),  # Version off by this much.
        st.sampled_from([0] * 9 + [1]),  # Position off by this much.
        st.sampled_from([b""] * 4 + [b'{"m":1}', b"[1", b"[1]"]),
        st.sampled_from([b'{"i":1}'] * 4 + [b"2", b"{", b'"\xc3"']),
        st.booleans(),  # A commit record after it.
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=examples(300))
@given(
    records=stream_records,
    damage=st.one_of(st.none(), st.tuples(st.integers(0, 2_000), st.integers(1, 255))),
    cut=st.integers(0, 40),
    of_stream=st.booleans(),
)
def test_fast_loops_decode_as_the_checked_path_does(
    records: list[tuple[bytes, bytes, int, int, bytes, bytes, bool]],
    damage: tuple[int, int] | None,
    cut: int,
    of_stream: bool,
) -> None:
    """A read of stream "ab" (``_decode_stream_run``) or of every stream (``read_all``'s
    loop): the same events and the same error as the record-by-record path."""
    raw = bytearray()
    for index, (stream, event_type, version_off, position_off, meta, data, commit) in enumerate(
        records
    ):
        position = 10 + index
        raw += encode_event(
            position + position_off, 3 + index + version_off, 7, stream, event_type, meta, data
        )
        if commit:
            raw += encode_commit(position, position, bytes(32))
    if damage is not None:
        at, mask = damage
        raw[at % len(raw)] ^= mask
    raw = raw[: len(raw) - cut]
    run = _Run(bytes(raw), "segment", 64, 10, len(records), b"ab" if of_stream else None)
    rows = _stream_rows if of_stream else _rows

    def outcome(decode: Any) -> tuple[Any, list[tuple[object, ...]]]:
        columns = Columns()
        try:
            decode(columns)
        except JournalCorrupted as error:
            return (error.offset, str(error)), rows(columns)
        return None, rows(columns)

    fast = outcome(lambda columns: _decode_run(run, 3, columns))
    checked = outcome(lambda columns: _decode_checked(run, 0, 10, 3, columns))
    assert fast == checked


def test_the_same_bytes_split_into_another_stream_and_type_are_refused() -> None:
    # "ab" + "c/1" then "abc" + "/1c": the second starts with the first's stream and type
    # bytes, but is another stream's record.
    raw = encode_event(10, 3, 7, b"ab", b"c/1", b"", b"1") + encode_event(
        11, 4, 7, b"abc", b"/1c", b"", b"1"
    )
    columns = Columns()
    with pytest.raises(JournalCorrupted, match="record of stream 'abc' where the index says"):
        _decode_run(_Run(raw, "segment", 64, 10, 2, b"ab"), 3, columns)
    assert columns.types == ["c/1"]


@pytest.mark.anyio
@pytest.mark.parametrize("cached_reads", [True, False])
async def test_read_chunks_yield_the_events_read_yields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached_reads: bool
) -> None:
    # Filled without syncs (what the reads see is the same): 3,000 synced appends one after
    # the other took most of the test's time.
    async with FileJournal(
        tmp_path / "journal",
        segment_bytes_max=64 * 1024,
        cached_reads=cached_reads,
        file_io=UnsyncedFileIO(),
    ) as journal:
        for index in range(3_000):
            metadata = {"n": index} if index % 1_000 == 0 else {}
            new = [NewEvent("Counted", {"i": index, "pad": "x" * (index % 50)}, metadata)]
            stream = "s-1" if index % 3 else "s-0"  # Runs of two, and segment boundaries.
            await journal.append(stream, new, expected_version=None)
        events = [event async for event in journal.read("s-1", 10, 1_900)]
        assert [event.version for event in events] == list(range(10, 1_901))
        # Read one event per chunk (a budget of one byte), a shorter range that still crosses
        # a segment boundary: each chunk is a read of its own.
        cases = ((8_192, 2 * 1024 * 1024, 1_900), (300, 2 * 1024 * 1024, 1_900), (5, 1, 700))
        for events_max, bytes_max, last in cases:
            monkeypatch.setattr(file_journal, "READ_CHUNK_EVENTS", events_max)
            monkeypatch.setattr(file_journal, "READ_CHUNK_BYTES", bytes_max)
            monkeypatch.setattr(file_journal, "CACHED_READ_BYTES", bytes_max)
            chunks = [chunk async for chunk in journal.read_chunks("s-1", 10, last)]
            assert [event for chunk in chunks for event in chunk.events()] == events[: last - 9]
            assert journal._opened is not None
            opened = journal._opened.index
            segments = {opened.segment_of(p).first_position for c in chunks for p in c.positions}
            assert len(segments) > 1
            # read_chunk gives the same chunks, asked for from each one's end.
            one_by_one = []
            chunk = await journal.read_chunk("s-1", 10, last)
            while chunk is not None:
                one_by_one.append(chunk)
                chunk = await journal.read_chunk("s-1", chunk.last_version + 1, last)
            assert [list(chunk.events()) for chunk in one_by_one] == [
                list(chunk.events()) for chunk in chunks
            ]
            sizes = [len(chunk) for chunk in chunks]
            assert min(sizes) > 0
            assert max(sizes) <= events_max
            if bytes_max == 1:
                assert sizes == [1] * (last - 9)  # At least one event, even over the budget.
            assert [chunk.first_version for chunk in chunks] == [
                10 + sum(sizes[:number]) for number in range(len(chunks))
            ]
            assert chunks[-1].last_version == last
            everything = [event async for event in journal.read_all()]
            assert [event.position for event in everything] == list(range(1, 3_001))
        assert [chunk async for chunk in journal.read_chunks("s-1", 2_001)] == []
        assert [chunk async for chunk in journal.read_chunks("nobody")] == []


@given(
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60),
    start_fraction=st.floats(min_value=0, max_value=1, exclude_max=True),
    segment_end=st.integers(min_value=1, max_value=200),
)
def test_run_end_is_where_consecutive_positions_in_the_segment_stop(
    gaps: list[int], start_fraction: float, segment_end: int
) -> None:
    positions = [sum(gaps[: index + 1]) for index in range(len(gaps))]
    start = int(start_fraction * len(positions))
    last_in_segment = max(segment_end, positions[start])
    expected = start + 1
    while (
        expected < len(positions)
        and positions[expected] == positions[expected - 1] + 1
        and positions[expected] <= last_in_segment
    ):
        expected += 1
    assert _run_end(positions, start, len(positions), last_in_segment) == expected


@pytest.mark.anyio
async def test_stopping_a_read_early_closes_it_at_once(tmp_path: Path) -> None:
    # A chunk reader left open inside read() would be collected later, which trio reports
    # (and the suite turns into an error).
    async with FileJournal(tmp_path / "journal") as journal:
        await journal.append("s", [NewEvent("E", index) for index in range(10)], expected_version=0)
        events = journal.read("s")
        async for event in events:
            assert event.version == 1
            break
        await events.aclose()
        assert [event.data async for event in journal.read("s", 9)] == [8, 9]


def test_a_chunk_built_for_reads_is_the_chunk_the_constructor_builds() -> None:
    positions = array("Q", [7, 9])
    fields = ("s", 3, positions, ["A", "B"], [{"a": 1}, 2], [EMPTY_METADATA, {"m": 1}], [10, 11])
    built = stream_chunk(*fields)
    assert built == StreamChunk(*fields)
    assert (built.last_version, len(built)) == (4, 2)
    assert [(e.version, e.position, e.data) for e in built.events()] == [
        (3, 7, {"a": 1}),
        (4, 9, 2),
    ]
