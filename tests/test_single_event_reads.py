"""Reads of one event check it as reads of many do: any changed byte is reported.

A stream with a single event, and the one-event tail after a snapshot, go through the same
read paths as longer reads (the stream read through the index, ``read_chunks``, ``read_all``)
but end their runs at once; each path must still check the record's checksum and fields and
raise ``JournalCorrupted`` naming the segment and the record's offset.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, NewEvent

from .examples import examples

SEGMENT_BYTES_MAX = 4096


async def _write(directory: Path, *, sealed: bool) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        await journal.append("before", [NewEvent("T", {"i": 0})] * 3, expected_version=0)
        await journal.append("solo", [NewEvent("Only", {"x": "y" * 20})], expected_version=0)
        await journal.append("pair", [NewEvent("P", {"n": 1})], expected_version=0)
        await journal.append("pair", [NewEvent("P", {"n": 2})], expected_version=1)
        await journal.save_snapshot("pair", 1, {"n": 1})
        await journal.append("after", [NewEvent("T", {"i": 1})], expected_version=0)
        if sealed:  # Roll on, so the events above are in a sealed segment opened from its index.
            for _ in range(30):
                await journal.append(
                    "filler", [NewEvent("F", {"pad": "p" * 200})], expected_version=None
                )


@pytest.fixture(scope="module", params=["active segment", "sealed segment"])
def journal_files(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("single")
    anyio.run(lambda: _write(directory, sealed=request.param == "sealed segment"))
    if request.param == "sealed segment":
        assert (directory / "00000000000000000001.idx").exists()
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


async def _solo(journal: FileJournal) -> list[object]:
    return [event.data async for event in journal.read("solo")]


async def _solo_chunks(journal: FileJournal) -> list[object]:
    return [data async for chunk in journal.read_chunks("solo") for data in chunk.data]


async def _solo_from_version(journal: FileJournal) -> list[object]:
    return [event.data async for event in journal.read("solo", 1, 1)]


async def _everything(journal: FileJournal) -> list[object]:
    return [event.data async for event in journal.read_all()]


async def _one_position(journal: FileJournal) -> list[object]:
    return [event.data async for event in journal.read_all(4, 4)]


async def _snapshot_and_tail(journal: FileJournal) -> list[object]:
    snapshot = await journal.load_snapshot("pair")
    assert snapshot is not None
    return [event.data async for event in journal.read("pair", snapshot.version + 1)]


READS: dict[str, Callable[[FileJournal], Awaitable[list[object]]]] = {
    "read": _solo,
    "read_chunks": _solo_chunks,
    "read of versions 1..1": _solo_from_version,
    "read_all": _everything,
    "read_all of its position": _one_position,
    "snapshot and tail": _snapshot_and_tail,
}
# The position of the record each read must stop at: solo's event is at position 4, the
# pair's second event (the tail after its snapshot) at position 6.
DAMAGED_POSITION = {"snapshot and tail": 6}


def _record_span(journal: FileJournal, position: int) -> tuple[str, int, int]:
    opened = journal._opened
    assert opened is not None
    segment = opened.index.segment_of(position)
    start, _ = segment.span(position)
    length = int.from_bytes(Path(segment.path).read_bytes()[start : start + 4], "little")
    return segment.path, start, start + 8 + length


@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    read=st.sampled_from(sorted(READS)),
    where=st.floats(0, 1, exclude_max=True),
    flip=st.integers(1, 255),
    cached=st.booleans(),
)
def test_a_changed_byte_of_a_one_event_read_is_reported(
    tmp_path: Path,
    journal_files: dict[str, bytes],
    read: str,
    where: float,
    flip: int,
    cached: bool,
) -> None:
    for path in tmp_path.iterdir():
        path.unlink()
    for name, contents in journal_files.items():
        (tmp_path / name).write_bytes(contents)

    async def damage_and_read() -> None:
        async with FileJournal(
            tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX, cached_reads=cached
        ) as journal:
            assert await READS[read](journal)  # Intact: it reads.
            path, start, end = _record_span(journal, DAMAGED_POSITION.get(read, 4))
            offset = start + int(where * (end - start))
            fd = os.open(path, os.O_RDWR)
            try:
                byte = os.pread(fd, 1, offset)[0]
                os.pwrite(fd, bytes([byte ^ flip]), offset)
            finally:
                os.close(fd)
            with pytest.raises(JournalCorrupted) as caught:
                await READS[read](journal)
            assert (caught.value.path, caught.value.offset) == (path, start)
            assert caught.value.during == "read"

    anyio.run(damage_and_read)
