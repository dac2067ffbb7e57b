"""The FileJournal's read side: the decoder's fast loop and the reader threads."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalClosed, JournalCorrupted, NewEvent, RecordedEvent
from journals._file_reader import _decode_checked, _decode_run
from journals._file_thread import ReaderThreads


async def _filled(directory: Path) -> tuple[bytes, int]:
    async with FileJournal(directory) as journal:
        for index in range(30):
            metadata = {"by": "ü", "n": index} if index % 3 == 0 else {}
            event = NewEvent("Even" if index % 2 == 0 else "Odd流", {"i": index}, metadata)
            await journal.append(f"s-{index % 4}", [event, event], expected_version=None)
    raw = (directory / "00000000000000000001.log").read_bytes()
    return raw[64:], 60


@pytest.mark.anyio
async def test_the_fast_loop_decodes_what_the_checked_path_decodes(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    fast: list[RecordedEvent] = []
    _decode_run(raw, "segment", 64, 1, count, None, fast)
    checked: list[RecordedEvent] = []
    _decode_checked(raw, "segment", 64, 0, 1, 1 + count, None, checked)
    assert fast == checked
    assert [e.position for e in fast] == list(range(1, 61))
    assert fast[0].metadata == {"by": "ü", "n": 0}
    assert fast[2].metadata == {}
    assert {e.type for e in fast} == {"Even", "Odd流"}


@pytest.mark.anyio
async def test_damage_after_good_records_is_reported_at_its_record(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    good: list[RecordedEvent] = []
    _decode_run(raw, "segment", 64, 1, count, None, good)
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
    events: list[RecordedEvent] = []
    with pytest.raises(JournalCorrupted, match="checksum mismatch") as caught:
        _decode_run(bytes(damaged), "segment", 64, 1, count, None, events)
    assert caught.value.offset == 64 + offsets[4]
    assert events == good[:4]


@pytest.mark.anyio
async def test_a_record_of_another_stream_is_refused(tmp_path: Path) -> None:
    raw, count = await _filled(tmp_path / "journal")
    events: list[RecordedEvent] = []
    with pytest.raises(JournalCorrupted, match="record of stream 's-1' where the index says"):
        _decode_run(raw, "segment", 64, 1, count, "s-0", events)
    assert [e.position for e in events] == [1, 2]


@pytest.mark.anyio
async def test_reader_threads_hand_back_results_and_errors_and_refuse_after_stop() -> None:
    readers = ReaderThreads(2)
    try:
        assert await readers.run(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await readers.run(divmod, 1, 0)
        async with anyio.create_task_group() as group:
            results: list[int] = []

            async def read(value: int) -> None:
                results.append(await readers.run(abs, -value))

            for value in range(20):
                group.start_soon(read, value)
        assert sorted(results) == list(range(20))
    finally:
        await readers.stop()
    with pytest.raises(JournalClosed, match="closed during the read"):
        await readers.run(abs, -1)
