"""The clean-close record: after a clean close, damage at the journal's end is refused.

Without the record, a checksum failure in the last batch, a batch without its commit record or
a short last segment read as a write torn by a crash, and opening cut them, acknowledged or
not. A journal that closed cleanly knows it ended exactly there (durability.md G15).
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, JournalFailed, NewEvent, verify_journal
from journals._clean_close import (
    CLEAN_CLOSE_FILE_NAME,
    RECORD_BYTES,
    CleanClose,
    read_clean_close,
)
from journals._codec import crc32, encode_event
from journals.testing import FaultyFileIO

from .examples import examples
from .journal_files import file_digests, without_clean_close

SEGMENT_BYTES_MAX = 4096

RecordEnds = Callable[[bytes], list[int]]
"""Offsets just past each record (segments: each batch's commit record) of a file's bytes."""


def _write(directory: Path, count: int, *, durable: bool = True) -> None:
    async def write() -> None:
        async with FileJournal(
            directory, segment_bytes_max=SEGMENT_BYTES_MAX, durable=durable
        ) as journal:
            version = await journal.stream_version("s")
            for index in range(count):
                data = {"i": version + index, "padding": "w" * 100}
                await journal.append("s", [NewEvent("T", data)], expected_version=version + index)

    anyio.run(write)


def _read(directory: Path) -> list[int]:
    async def read() -> list[int]:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            return [event.data["i"] async for event in journal.read("s")]

    return anyio.run(read)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def _commit_ends(data: bytes) -> list[int]:
    """Offsets just past each commit record of a segment (frames: length, CRC, kind...)."""
    ends, offset = [], 64
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        end = offset + 8 + length
        if data[offset + 8] == 2:  # KIND_COMMIT
            ends.append(end)
        offset = end
    return ends


def test_a_clean_close_records_the_end_and_an_open_takes_the_record_away(tmp_path: Path) -> None:
    _write(tmp_path, 30)
    last = _segments(tmp_path)[-1]
    record = read_clean_close(str(tmp_path))
    assert record is not None
    assert record.first_position == int(last.stem)
    assert record.size == last.stat().st_size
    assert len((tmp_path / CLEAN_CLOSE_FILE_NAME).read_bytes()) == RECORD_BYTES

    async def look_while_open() -> bool:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            await journal.append("s", [NewEvent("T", {"i": 30})], expected_version=30)
            return (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()

    # Open, the journal may be torn by a crash again: the record is gone until it closes.
    assert anyio.run(look_while_open) is False
    again = read_clean_close(str(tmp_path))
    assert again is not None
    assert again.size > record.size
    assert again.final_hash != record.final_hash
    assert _read(tmp_path) == list(range(31))


def _flip_in_last(path: Path, record_ends: RecordEnds, at: int) -> int:
    """Flip a bit ``at`` bytes into the last record (batch) of ``path``; answer where it starts."""
    data = bytearray(path.read_bytes())
    start = record_ends(bytes(data))[-2]
    data[start + at] ^= 0x01
    path.write_bytes(bytes(data))
    return start


def _append(path: Path, tail: bytes) -> int:
    """Append ``tail`` to ``path``; answer the size before."""
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(tail)
    return size


def _cut_off_last(path: Path, record_ends: RecordEnds) -> int:
    """Cut the last record (batch) off ``path`` at its boundary: what is left reads as whole."""
    data = path.read_bytes()
    end = record_ends(data)[-2]
    path.write_bytes(data[:end])
    return end


_flip_in_last_batch = functools.partial(_flip_in_last, record_ends=_commit_ends, at=20)
_partial_record = functools.partial(_append, tail=b"\x30\x00\x00\x00\x01\x02")
_last_batch_cut_off = functools.partial(_cut_off_last, record_ends=_commit_ends)
_orphan_event = functools.partial(_append, tail=encode_event(31, 31, 0, b"s", b"T", b"", b"{}"))


def _verify_names_the_refusal(directory: Path, path: Path, offset: int, reason: str) -> None:
    """``verify_journal`` reports the damage as opening refuses it, not as a torn tail it cuts."""
    report = verify_journal(directory)
    problem = report.problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(path), offset)
    assert reason in problem.reason
    assert not any("cuts it" in note for note in report.notes)


DAMAGE: dict[str, Callable[[Path], int]] = {
    "a flipped bit in the last batch": _flip_in_last_batch,
    "a partial record after the end": _partial_record,
    "the last batch cut off": _last_batch_cut_off,
    "an event without its commit record": _orphan_event,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_at_the_end_of_a_cleanly_closed_journal_is_refused_not_cut(
    tmp_path: Path, damage: str
) -> None:
    _write(tmp_path, 30)
    segment = _segments(tmp_path)[-1]
    offset = DAMAGE[damage](segment)
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted, match="was closed cleanly") as refused:
        _read(tmp_path)
    assert refused.value.path == str(segment)
    assert refused.value.offset == offset
    message = str(refused.value)
    assert f"remove {tmp_path / CLEAN_CLOSE_FILE_NAME}" in message
    assert "refuses to open rather than cut acknowledged events" in message
    assert file_digests(tmp_path) == before  # Nothing cut, the record kept.
    _verify_names_the_refusal(tmp_path, segment, offset, "was closed cleanly")
    # Following the advice: without the record the end is cut as after a crash.
    without_clean_close(tmp_path)
    kept = _read(tmp_path)
    assert kept == list(range(len(kept)))
    assert len(kept) >= 29


def test_a_missing_last_segment_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, 60)
    segments = _segments(tmp_path)
    assert len(segments) > 2
    segments[-1].unlink()
    with pytest.raises(
        JournalCorrupted, match="the segments after this one are missing"
    ) as refused:
        _read(tmp_path)
    assert refused.value.path == str(segments[-2])


def test_a_segment_added_after_the_close_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, 60)
    last = _segments(tmp_path)[-1]
    record = read_clean_close(str(tmp_path))
    assert record is not None
    events = int(last.stem) + 1000
    extra = tmp_path / f"{events:020d}.log"
    extra.write_bytes(b"\x00" * 10)  # A torn creation, named where no roll could have made one.
    with pytest.raises(JournalCorrupted):
        _read(tmp_path)
    extra.unlink()
    # A torn creation named for the next position: what a crash while rolling leaves.
    head = int(last.stem) + len(_commit_ends(last.read_bytes())) - 1
    torn = tmp_path / f"{head + 1:020d}.log"
    torn.write_bytes(b"\x00" * 10)
    with pytest.raises(JournalCorrupted, match="incomplete header, but the journal was closed"):
        _read(tmp_path)
    assert torn.exists()
    # Verify says it as opening does: damage, not what a crash left and opening removes.
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert report.problem.path == str(torn)
    assert "incomplete header, but the journal was closed" in report.problem.reason
    assert report.torn_tails == ()
    assert not any("left by a crash" in note for note in report.notes), report.notes


def test_a_record_older_than_the_last_segment_is_refused(tmp_path: Path) -> None:
    # A record from an earlier close put back (a backup mixed up): the journal grew a
    # segment since, which the record does not know of.
    _write(tmp_path, 10)
    stale = (tmp_path / CLEAN_CLOSE_FILE_NAME).read_bytes()
    segments_before = _segments(tmp_path)
    _write(tmp_path, 40)
    last = _segments(tmp_path)[-1]
    assert last not in segments_before
    (tmp_path / CLEAN_CLOSE_FILE_NAME).write_bytes(stale)
    before = file_digests(tmp_path)
    with pytest.raises(
        JournalCorrupted, match="this segment was added after the journal was closed"
    ) as refused:
        _read(tmp_path)
    assert (refused.value.path, refused.value.offset) == (str(last), 0)
    assert file_digests(tmp_path) == before


def _same_size_other_history(directory: Path, character: str) -> None:
    """30 events of the same sizes as ``_write``'s, the last one's padding made of ``character``."""

    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for index in range(30):
                padding = (character if index == 29 else "w") * 100
                data = {"i": index, "padding": padding}
                await journal.append("s", [NewEvent("T", data)], expected_version=index)

    anyio.run(write)


def test_another_final_hash_at_the_same_size_is_refused(tmp_path: Path) -> None:
    # The last batch rewritten whole, every checksum and the chain valid: only the hash kept
    # by the clean close differs.
    original, rewritten = tmp_path / "original", tmp_path / "rewritten"
    _same_size_other_history(original, "w")
    _same_size_other_history(rewritten, "v")
    segment = _segments(rewritten)[-1]
    assert segment.stat().st_size == _segments(original)[-1].stat().st_size
    record = (original / CLEAN_CLOSE_FILE_NAME).read_bytes()
    (rewritten / CLEAN_CLOSE_FILE_NAME).write_bytes(record)
    with pytest.raises(JournalCorrupted, match="ends in another hash than the one recorded"):
        _read(rewritten)
    problem = verify_journal(rewritten).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(segment), segment.stat().st_size)
    assert "its last batches were rewritten" in problem.reason


def test_only_the_record_left_is_refused_as_missing_segments(tmp_path: Path) -> None:
    _write(tmp_path, 5)
    for segment in _segments(tmp_path):
        segment.unlink()
    with pytest.raises(JournalCorrupted, match="its segments are missing"):
        _read(tmp_path)


@pytest.mark.anyio
async def test_a_failed_journal_leaves_no_record(tmp_path: Path) -> None:
    faults = FaultyFileIO()
    async with FileJournal(tmp_path, file_io=faults) as journal:
        await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
        faults.fail_fsync_after = faults.fsyncs
        with pytest.raises(JournalFailed, match="fsync"):
            await journal.append("s", [NewEvent("T", {"i": 1})], expected_version=1)
    assert not (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()
    # Reopening recovers what is on disk (the failed append may or may not be there).
    async with FileJournal(tmp_path) as reopened:
        found = [event.data async for event in reopened.read("s")]
    assert found in ([{"i": 0}], [{"i": 0}, {"i": 1}])


@pytest.mark.anyio
async def test_a_segment_longer_than_what_was_committed_leaves_no_record(tmp_path: Path) -> None:
    """The close vouches only for bytes it committed: bytes after them (a write whose sync
    never returned leaves such bytes; here they are written behind the journal's back) are
    no clean end, and the next open cuts them as a torn tail."""
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
        [segment] = _segments(tmp_path)
        committed = segment.stat().st_size
        with segment.open("ab") as file:
            file.write(b"\x07" * 5)
    assert read_clean_close(str(tmp_path)) is None
    async with FileJournal(tmp_path) as reopened:  # Checked as after a crash: the bytes cut.
        [tail] = reopened.recovery_report.torn_tails
        assert (tail.path, tail.offset, tail.bytes_cut) == (str(segment), committed, 5)
        found = [event.data async for event in reopened.read("s")]
    assert found == [{"i": 0}]
    assert segment.stat().st_size == committed


def test_a_journal_that_does_not_sync_leaves_no_record(tmp_path: Path) -> None:
    _write(tmp_path, 3, durable=False)
    assert not (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()
    _write(tmp_path, 3)  # A durable close records the end again.
    assert (tmp_path / CLEAN_CLOSE_FILE_NAME).exists()


@pytest.mark.parametrize("damage", ["a flipped bit", "a byte appended"])
def test_a_damaged_record_says_nothing_and_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    _write(tmp_path, 10)
    path = tmp_path / CLEAN_CLOSE_FILE_NAME
    data = bytearray(path.read_bytes())
    if damage == "a flipped bit":
        data[10] ^= 0xFF
    else:  # A whole record followed by more: not what a close writes.
        data.append(0)
    path.write_bytes(bytes(data))
    _partial_record(_segments(tmp_path)[-1])
    with caplog.at_level(logging.WARNING, logger="journals.file"):
        assert _read(tmp_path) == list(range(10))  # The tail cut, as after a crash.
    assert "is not a valid clean-close record" in caplog.text
    assert read_clean_close(str(tmp_path)) is not None  # The close wrote a valid one.


def test_a_leftover_temporary_record_is_removed_on_open(tmp_path: Path) -> None:
    _write(tmp_path, 3)
    leftover = tmp_path / (CLEAN_CLOSE_FILE_NAME + ".tmp")
    leftover.write_bytes(b"half")
    assert _read(tmp_path) == [0, 1, 2]
    assert not leftover.exists()


records = st.builds(
    CleanClose,
    st.integers(1, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
)


@settings(max_examples=examples(200))
@given(record=records, at=st.integers(0, RECORD_BYTES - 1), bit=st.integers(0, 7))
def test_the_record_round_trips_and_any_flipped_bit_voids_it(
    record: CleanClose, at: int, bit: int
) -> None:
    encoded = record.encode()
    assert len(encoded) == RECORD_BYTES
    assert CleanClose.decode(encoded) == record
    damaged = bytearray(encoded)
    damaged[at] ^= 1 << bit
    assert CleanClose.decode(bytes(damaged)) is None
    assert CleanClose.decode(encoded[:-1]) is None
    assert CleanClose.decode(encoded + b"\x00") is None


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", crc32(body))


@settings(max_examples=examples(50))
@given(record=records)
def test_a_record_whose_checksum_holds_but_not_its_fields_says_nothing(
    record: CleanClose,
) -> None:
    encoded = record.encode()
    body = encoded[:-4]
    assert CleanClose.decode(_with_crc(body)) == record
    assert CleanClose.decode(_with_crc(b"EFCLOSE1" + body[8:])) is None  # Magic of the 60 bytes.
    assert CleanClose.decode(_with_crc(b"EFCLOSE3" + body[8:])) is None
    no_position = body[:8] + (0).to_bytes(8, "little") + body[16:]
    assert CleanClose.decode(_with_crc(no_position)) is None
    earlier = _earlier_record(record)[:-4]
    assert CleanClose.decode(_with_crc(b"EFCLOSE2" + earlier[8:])) is None


def _earlier_record(record: CleanClose) -> bytes:
    """``record`` as the 60-byte record of earlier versions writes it (no snapshot file size)."""
    body = struct.pack(
        "<8sQQ32s", b"EFCLOSE1", record.first_position, record.size, record.final_hash
    )
    return body + struct.pack("<I", crc32(body))


@settings(max_examples=examples(50))
@given(record=records, at=st.integers(0, 59), bit=st.integers(0, 7))
def test_a_record_of_an_earlier_version_is_still_read(
    record: CleanClose, at: int, bit: int
) -> None:
    earlier = _earlier_record(record)
    assert CleanClose.decode(earlier) == replace(record, snapshots_size=None)
    damaged = bytearray(earlier)
    damaged[at] ^= 1 << bit
    assert CleanClose.decode(bytes(damaged)) is None
    with pytest.raises(ValueError, match="snapshot file's size"):
        replace(record, snapshots_size=None).encode()


def _assert_cut_is_refused(path: Path, cut: int, header_bytes: int, reason: str) -> None:
    """Cut ``cut`` bytes off ``path`` (never into its header): opening refuses, cutting nothing."""
    size = max(header_bytes, path.stat().st_size - cut)
    os.truncate(path, size)
    with pytest.raises(JournalCorrupted, match=reason):
        _read(path.parent)
    assert path.stat().st_size == size


@settings(max_examples=examples(25), deadline=None)
@given(cut=st.integers(1, 400))
def test_any_cut_of_a_cleanly_closed_journal_is_refused(cut: int) -> None:
    # A property over where the end is cut: never opened as if nothing happened, never cut.
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        _write(directory, 12)
        _assert_cut_is_refused(_segments(directory)[-1], cut, 64, "was closed cleanly")


@pytest.mark.anyio
async def test_short_writes_still_write_a_whole_record(tmp_path: Path) -> None:
    async with FileJournal(tmp_path, file_io=FaultyFileIO(write_bytes_max=7)) as journal:
        await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
    record = read_clean_close(str(tmp_path))
    assert record is not None
    assert record.size == _segments(tmp_path)[-1].stat().st_size


@pytest.mark.anyio
async def test_a_record_that_cannot_be_written_does_not_fail_the_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultyFileIO()
    with caplog.at_level(logging.WARNING, logger="journals.file"):
        async with FileJournal(tmp_path, file_io=faults) as journal:
            await journal.append("s", [NewEvent("T", {"i": 0})], expected_version=0)
            faults.fail_fsync_after = faults.fsyncs  # Every fsync from here on fails.
    assert "could not record the clean close" in caplog.text
    assert read_clean_close(str(tmp_path)) is None
    # The next open checks the end as after a crash, and finds everything acknowledged.
    async with FileJournal(tmp_path) as reopened:
        assert [event.data async for event in reopened.read("s")] == [{"i": 0}]
        assert not (tmp_path / (CLEAN_CLOSE_FILE_NAME + ".tmp")).exists()


# -- the snapshot file ---------------------------------------------------------------------------
