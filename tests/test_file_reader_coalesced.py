"""Reads of runs that lie close behind each other in a segment: one read, the same answers.

A stream written one event per command while other streams were written too has no two
consecutive positions. Its runs (of one event each, mostly) that lie within
``GAP_BYTES_MAX`` bytes of each other are read with one ``pread``; the records between them
are read but never decoded, so they are neither handed back nor blamed for damage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import journals._file_reader as file_reader
from journals import FileJournal, JournalCorrupted, NewEvent
from journals._codec import decode_event, encode_event, read_frame
from journals._file_reader import CACHED_READS, GAP_BYTES_MAX, Columns, read_positions
from journals._index import JournalIndex
from journals._segment_files import SegmentFiles

from .examples import examples

SEGMENT_BYTES_MAX = 8192
STREAMS = ("a", "b", "c", "d", "e")
READ_MODES = [False, True] if CACHED_READS else [False]


def _pad(round_number: int, stream: int) -> str:
    """Mostly short events, and now and then one larger than the gap bound."""
    large = (round_number * 7 + stream * 3) % 23 == 0
    return "p" * (max(GAP_BYTES_MAX, 4096) + 100 if large else 10)


async def _write_interleaved(directory: Path) -> None:
    """Streams taking turns, one event per append, and a stream appended in threes."""
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        for round_number in range(30):
            for number, stream in enumerate(STREAMS):
                event = NewEvent(
                    f"T{number % 2}", {"r": round_number, "p": _pad(round_number, number)}
                )
                await journal.append(stream, [event], expected_version=round_number)
            if round_number % 4 == 0:
                events = [NewEvent("Bulk", {"r": round_number, "i": index}) for index in range(3)]
                await journal.append("bulk", events, expected_version=None)


class Opened:
    """A journal's index, and its segment files opened as an open journal opens them."""

    def __init__(self, directory: Path) -> None:
        async def open_index() -> JournalIndex:
            async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
                assert journal._opened is not None
                return journal._opened.index

        self.index = anyio.run(open_index)
        self.files = SegmentFiles()
        for segment in self.index.segments:
            fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
            self.files.add(segment.first_position, segment.path, fd)

    def read(
        self,
        positions: list[int],
        stream_id: str | None = None,
        first_version: int = 1,
        bytes_max: int = 1 << 30,
        *,
        cached_only: bool = False,
    ) -> Columns:
        return read_positions(
            self.index,
            self.files,
            positions,
            stream_id,
            first_version,
            bytes_max,
            None,
            cached_only=cached_only,
        )


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Opened]:
    directory = tmp_path_factory.mktemp("interleaved")
    anyio.run(_write_interleaved, directory)
    opened = Opened(directory)
    assert len(opened.index.segments) > 3  # Reads cross segment boundaries.
    assert opened.index.segments[0].index_file is not None  # Sealed ones from index files.
    yield opened
    opened.files.close()


def _rows(columns: Columns) -> list[tuple[Any, ...]]:
    fields: list[list[Any]] = [columns.types, columns.data, columns.metadata, columns.timestamps]
    if columns.streams:  # A read of all streams: each event's stream and version too.
        fields += [columns.streams, columns.versions]
    return list(zip(*fields, strict=True))


@contextmanager
def _counted_reads() -> Iterator[list[int]]:
    """The length of every ``pread`` (and ``preadv``, of cached reads) made meanwhile."""
    lengths: list[int] = []
    pread, preadv = os.pread, os.preadv

    def counted_pread(fd: int, length: int, offset: int) -> bytes:
        lengths.append(length)
        return pread(fd, length, offset)

    def counted_preadv(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        lengths.append(sum(map(len, buffers)))
        return preadv(fd, buffers, offset, flags)

    with (
        mock.patch.object(os, "pread", counted_pread),
        mock.patch.object(os, "preadv", counted_preadv),
    ):
        yield lengths


def _largest_event_bytes(opened: Opened) -> int:
    largest = 0
    for segment in opened.index.segments:
        for position in range(segment.first_position, segment.last_position + 1):
            start, end = segment.span(position)
            largest = max(largest, end - start)
    return largest


@settings(max_examples=examples(150), deadline=None)
@given(
    data=st.data(),
    stream=st.sampled_from([None, *STREAMS, "bulk"]),
    bytes_max=st.sampled_from([1, 300, 2_000, 5_000, 20_000, 1 << 30]),
    cached_only=st.sampled_from(READ_MODES),
)
def test_reads_answer_what_reads_of_each_position_alone_answer(
    interleaved: Opened, data: Any, stream: str | None, bytes_max: int, cached_only: bool
) -> None:
    """Any increasing positions (a stream read: any range of its versions), any budget."""
    if stream is None:
        every = range(1, interleaved.index.head_position + 1)
        positions = sorted(data.draw(st.sets(st.sampled_from(every), min_size=1)))
        first_version = 1
    else:
        of_stream = interleaved.index.streams[stream]
        first = data.draw(st.integers(0, len(of_stream) - 1))
        last = data.draw(st.integers(first, len(of_stream) - 1))
        positions = list(of_stream[first : last + 1])
        first_version = first + 1
    with _counted_reads() as lengths:
        columns = interleaved.read(
            positions, stream, first_version, bytes_max, cached_only=cached_only
        )
    alone = Columns()
    for number, position in enumerate(positions):
        one = interleaved.read([position], stream, first_version + number)
        for name in ("streams", "versions", "types", "data", "metadata", "timestamps"):
            getattr(alone, name).extend(getattr(one, name))
    answered = len(columns.types)
    assert 1 <= answered <= len(positions)
    assert _rows(columns) == _rows(alone)[:answered]
    # Bounded as before: each read begins within the budget, and only a read of one event
    # that does not fit alone goes past it.
    assert sum(lengths[:-1]) < bytes_max
    assert sum(lengths) <= max(bytes_max, sum(lengths[:-1]) + _largest_event_bytes(interleaved))
    assert columns.nbytes == sum(lengths)
    if bytes_max == 1 << 30:
        assert answered == len(positions)


@pytest.mark.parametrize("cached_only", READ_MODES)
def test_an_interleaved_stream_is_read_with_fewer_reads(
    interleaved: Opened, cached_only: bool
) -> None:
    positions = list(interleaved.index.streams["a"])
    segments = {interleaved.index.segment_of(position).first_position for position in positions}
    with _counted_reads() as lengths:
        columns = interleaved.read(positions, "a", cached_only=cached_only)
    assert len(columns.types) == len(positions)
    # Without coalescing: one read per event (no two of its positions are consecutive).
    with mock.patch.object(file_reader, "GAP_BYTES_MAX", -1), _counted_reads() as alone:
        interleaved.read(positions, "a", cached_only=cached_only)
    assert len(alone) == len(positions)
    # With it: one read per segment, and one more wherever an event larger than the gap
    # bound lies between two of its events.
    large = sum(
        _pad(round_number, number) != _pad(0, 1)
        for round_number in range(30)
        for number in range(len(STREAMS))
    )
    assert len(segments) <= len(lengths) <= len(segments) + large
    assert len(lengths) < len(positions) // 2


@pytest.mark.parametrize("cached_only", READ_MODES)
def test_runs_further_apart_than_the_gap_bound_are_read_alone(
    tmp_path: Path, cached_only: bool
) -> None:
    """Widely spread positions cost one read each, as before, and nothing more is read."""

    async def write() -> None:
        async with FileJournal(tmp_path) as journal:
            for version in range(5):
                await journal.append(
                    "sparse", [NewEvent("T", {"v": version})], expected_version=version
                )
                big = NewEvent("Big", {"pad": "p" * GAP_BYTES_MAX})
                await journal.append("other", [big], expected_version=version)

    anyio.run(write)
    opened = Opened(tmp_path)
    try:
        positions = list(opened.index.streams["sparse"])
        with _counted_reads() as lengths:
            columns = opened.read(positions, "sparse", cached_only=cached_only)
        assert [value["v"] for value in columns.data] == list(range(5))
        segment = opened.index.segments[0]
        assert lengths == [
            segment.span(position)[1] - segment.span(position)[0] for position in positions
        ]
    finally:
        opened.files.close()


async def _write_alternating(directory: Path, *, sealed: bool) -> None:
    """Streams a (positions 1, 3, 5, 7) and b (2, 4, 6, 8), one event per append."""
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        for version in range(4):
            for stream in ("a", "b"):
                event = NewEvent("T", {"stream": stream, "version": version + 1})
                await journal.append(stream, [event], expected_version=version)
        if sealed:  # Roll on: the events above are in a sealed segment, opened from its index.
            for _ in range(20):
                filler = NewEvent("F", {"pad": "p" * 300})
                await journal.append("filler", [filler], expected_version=None)


def _damage(path: str, offset: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, bytes([os.pread(fd, 1, offset)[0] ^ 0x5A]), offset)
    finally:
        os.close(fd)


async def _read_a(journal: FileJournal) -> Any:
    """Stream a's data as the journal reads it, or the ``JournalCorrupted`` it raised."""
    try:
        return [event.data async for event in journal.read("a")]
    except JournalCorrupted as error:
        return error


async def _damage_and_read_a(
    directory: Path, cached_reads: bool, position: int, where: int
) -> tuple[Any, Any, tuple[str, int]]:
    """Open the journal, change the byte ``where`` bytes into the record at ``position``, and
    read stream a twice: as the journal reads it, and with each run read alone. Answers both
    outcomes and the record's segment and offset."""
    async with FileJournal(directory, segment_bytes_max=4096, cached_reads=cached_reads) as journal:
        assert journal._opened is not None
        segment = journal._opened.index.segment_of(position)
        assert (segment.index_file is not None) == (
            segment is not journal._opened.index.segments[-1]
        )
        offset = segment.span(position)[0]
        assert len(await _read_a(journal)) == 4  # Intact (and in the page cache).
        _damage(segment.path, offset + where)
        coalesced = await _read_a(journal)
        with mock.patch.object(file_reader, "GAP_BYTES_MAX", -1):
            alone = await _read_a(journal)
    return coalesced, alone, (segment.path, offset)


@pytest.mark.parametrize("sealed", [False, True], ids=["active segment", "sealed segment"])
@pytest.mark.parametrize("cached_reads", READ_MODES)
def test_damage_between_two_wanted_records_is_not_theirs(
    tmp_path: Path, sealed: bool, cached_reads: bool
) -> None:
    anyio.run(lambda: _write_alternating(tmp_path, sealed=sealed))
    # b's version 2, between a's versions 2 and 3.
    coalesced, alone, _ = anyio.run(_damage_and_read_a, tmp_path, cached_reads, 4, 20)
    expected = [{"stream": "a", "version": version} for version in range(1, 5)]
    assert coalesced == alone == expected


@pytest.mark.parametrize("sealed", [False, True], ids=["active segment", "sealed segment"])
@pytest.mark.parametrize("cached_reads", READ_MODES)
@pytest.mark.parametrize("where", [0, 8, 20, 50], ids=["length", "kind", "version", "data"])
def test_damage_of_a_wanted_record_is_reported_as_by_a_read_of_it_alone(
    tmp_path: Path, sealed: bool, cached_reads: bool, where: int
) -> None:
    anyio.run(lambda: _write_alternating(tmp_path, sealed=sealed))
    # a's version 3, after b's record at position 4.
    coalesced, alone, record = anyio.run(_damage_and_read_a, tmp_path, cached_reads, 5, where)
    assert isinstance(coalesced, JournalCorrupted)
    assert isinstance(alone, JournalCorrupted)
    assert (coalesced.path, coalesced.offset, str(coalesced)) == (
        alone.path,
        alone.offset,
        str(alone),
    )
    assert (coalesced.path, coalesced.offset) == record


async def _write_types_taking_turns(directory: Path, pad: int) -> None:
    """Stream a's events of types A1, A2, A1, A2, ... (names of one length), each one between
    two events of stream b; ``pad`` bytes of data each."""
    async with FileJournal(directory) as journal:
        for version in range(6):
            for stream in ("a", "b"):
                event = NewEvent(f"A{version % 2 + 1}", {"v": version + 1, "p": "p" * pad})
                await journal.append(stream, [event], expected_version=version)


@pytest.mark.parametrize("pad", [10, GAP_BYTES_MAX + 100], ids=["read together", "read alone"])
@pytest.mark.parametrize("cached_reads", READ_MODES)
def test_each_run_of_a_read_has_its_own_type_and_stream_checked(
    tmp_path: Path, pad: int, cached_reads: bool
) -> None:
    """What the decoding of one run learnt of the stream's records (the bytes of its id and
    last type) is not taken for the next run's: a type of the same length is read as itself,
    and a later run's record of another stream id of the same length (checksummed) is refused
    as in a read of it alone."""
    anyio.run(_write_types_taking_turns, tmp_path, pad)

    async def read_a() -> Any:
        async with FileJournal(tmp_path, cached_reads=cached_reads) as journal:
            return await _read_a_types(journal)

    assert anyio.run(read_a) == [(f"A{v % 2 + 1}", v + 1) for v in range(6)]

    async def forge_and_read() -> tuple[Any, Any]:
        async with FileJournal(tmp_path, cached_reads=cached_reads) as journal:
            assert journal._opened is not None
            segment = journal._opened.index.segment_of(5)  # a's version 3, type A1
            start, end = segment.span(5)
            fd = os.open(segment.path, os.O_RDWR)
            try:
                record = os.pread(fd, end - start, start)
                body_start, body_end = read_frame(record, 0)
                fields = decode_event(record[body_start:body_end])
                # Whole and checksummed, of stream "c": the same length as the "a" it replaces.
                forged = encode_event(5, 3, fields.timestamp_ns, b"c", b"A1", b"", fields.data)
                assert len(forged) == body_end  # The event record, not the commit after it.
                os.pwrite(fd, forged, start)
            finally:
                os.close(fd)
            found = await _read_a_types(journal)
            with mock.patch.object(file_reader, "GAP_BYTES_MAX", -1):
                alone = await _read_a_types(journal)
            return found, alone

    found, alone = anyio.run(forge_and_read)
    assert isinstance(found, JournalCorrupted)
    assert isinstance(alone, JournalCorrupted)
    assert (found.path, found.offset, str(found)) == (alone.path, alone.offset, str(alone))


async def _read_a_types(journal: FileJournal) -> Any:
    try:
        return [(event.type, event.data["v"]) async for event in journal.read("a")]
    except JournalCorrupted as error:
        return error
