"""Recovery: torn tails are cut and reported, anything else is corruption with its offset.

The exhaustive cut test runs the pure scanner on every truncation of the last batches; the
hypothesis test reopens real journals truncated at chosen bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journals import (
    FileJournal,
    JournalCorrupted,
    JournalKeyMissing,
    NewEvent,
    RecordedEvent,
    verify_journal,
)
from journals._codec import (
    SEGMENT_HEADER_BYTES,
    ZERO_HASH,
    encode_event,
    encode_segment_header,
    read_frame,
)
from journals._recovery import scan_segment

from .examples import examples
from .journal_files import without_clean_close

# Appends of 1 to 3 events; the expected log is the concatenation, in order.
APPENDS: list[tuple[str, list[object]]] = [
    (f"s{index % 4}", [{"n": index, "part": part} for part in range(index % 3 + 1)])
    for index in range(40)
]
SEGMENT = "00000000000000000001.log"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _write(directory: Path, appends: list[tuple[str, list[object]]]) -> None:
    async with FileJournal(directory) as journal:
        for stream, payloads in appends:
            await journal.append(
                stream, [NewEvent("E", payload) for payload in payloads], expected_version=None
            )


async def _read_all(directory: Path) -> tuple[list[RecordedEvent], FileJournal]:
    async with FileJournal(directory) as journal:
        return [event async for event in journal.read_all()], journal


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recovery") / "journal"
    anyio.run(_write, directory, APPENDS)
    return directory


def _expected_prefix(event_count: int) -> list[object]:
    flat = [payload for _, payloads in APPENDS for payload in payloads]
    return flat[:event_count]


def _append_boundaries() -> set[int]:
    """Event counts at which an append ends: recovery may only stop at one of them."""
    total, ends = 0, {0}
    for _, payloads in APPENDS:
        total += len(payloads)
        ends.add(total)
    return ends


def _commit_ends(data: bytes) -> list[int]:
    """End offsets of every commit record of a segment."""
    ends, offset = [], SEGMENT_HEADER_BYTES
    while offset < len(data):
        start, end = read_frame(data, offset)
        if data[start] == 2:
            ends.append(end)
        offset = end
    return ends


def test_every_truncation_of_the_last_batches_recovers_a_prefix(written: Path) -> None:
    data = (written / SEGMENT).read_bytes()
    ends = _commit_ends(data)
    boundaries = _append_boundaries()
    for cut in range(ends[-6], len(data) + 1):
        scan = scan_segment(
            data[:cut],
            "segment",
            first_position=1,
            previous_hash=ZERO_HASH,
            key=None,
            versions={},
            is_last=True,
        )
        committed = [end for end in ends if end <= cut]
        assert scan.durable_end == committed[-1]
        assert scan.event_count in boundaries  # Whole appends only: atomic on disk.
        if cut in ends:
            assert scan.tail is None
        else:
            assert scan.tail is not None
            assert (scan.tail.offset, scan.tail.bytes_cut) == (
                scan.durable_end,
                cut - scan.durable_end,
            )


@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(back=st.integers(1, 700))
def test_reopening_a_truncated_journal_cuts_the_tail_and_keeps_a_prefix(
    written: Path, back: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "journal"
        shutil.copytree(written, copy)
        segment = copy / SEGMENT
        size = segment.stat().st_size
        cut = max(SEGMENT_HEADER_BYTES, size - back)
        os.truncate(segment, cut)
        # Closed cleanly, the journal ended at `size`: any cut is damage, and opening refuses.
        with pytest.raises(JournalCorrupted, match="was closed cleanly"):
            anyio.run(_read_all, copy)
        assert segment.stat().st_size == cut  # Nothing cut by the refused open.
        without_clean_close(copy)  # Now the cut stands for a write torn by a crash.
        events, journal = anyio.run(_read_all, copy)
        assert [e.data for e in events] == _expected_prefix(len(events))
        assert len(events) in _append_boundaries()
        tails = journal.recovery_report.torn_tails
        ends = _commit_ends((written / SEGMENT).read_bytes())
        if cut in ends:
            assert tails == ()
        else:
            (tail,) = tails
            assert tail.path == str(segment)
            assert tail.offset + tail.bytes_cut == cut
            assert segment.stat().st_size == tail.offset  # Cut on disk, too.
        # A second open finds nothing more to cut.
        again, journal = anyio.run(_read_all, copy)
        assert again == events
        assert journal.recovery_report.torn_tails == ()


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x04
    path.write_bytes(bytes(raw))


@pytest.mark.anyio
async def test_a_bit_flip_before_committed_data_is_corruption_with_its_offset(
    written: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "journal"
    shutil.copytree(written, copy)
    segment = copy / SEGMENT
    data = segment.read_bytes()
    record = _commit_ends(data)[10]  # The first record of the 12th batch.
    _flip(segment, record + 40)
    with pytest.raises(JournalCorrupted, match="checksum") as caught:
        async with FileJournal(copy):
            pass
    assert (caught.value.path, caught.value.offset) == (str(segment), record)
    assert str(segment) in str(caught.value)
    report = verify_journal(copy)
    assert report.problem is not None
    assert (report.problem.path, report.problem.offset) == (str(segment), record)


@pytest.mark.anyio
async def test_an_edited_record_with_a_valid_checksum_breaks_the_chain(
    written: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "journal"
    shutil.copytree(written, copy)
    segment = copy / SEGMENT
    data = segment.read_bytes()
    start = _commit_ends(data)[3]
    body_start, body_end = read_frame(data, start)
    original = data[start:body_end]
    # Re-encode the same event with other data of the same length: checksums stay valid.
    forged = encode_event(*_event_fields(data[body_start:body_end]), data=b'{"n":3,"part":9}')
    assert len(forged) == len(original)
    segment.write_bytes(data[:start] + forged + data[body_end:])
    with pytest.raises(JournalCorrupted, match="chain hash mismatch"):
        async with FileJournal(copy):
            pass


def _event_fields(body: bytes) -> tuple[int, int, int, bytes, bytes, bytes]:
    from journals._codec import decode_event

    fields = decode_event(body)
    return (
        fields.position,
        fields.version,
        fields.timestamp_ns,
        fields.stream_id.encode(),
        fields.type.encode(),
        fields.metadata,
    )


@pytest.mark.anyio
async def test_a_keyed_chain_needs_its_key(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory, key=b"secret") as journal:
        await journal.append("s", [NewEvent("E", 1)], expected_version=0)
    with pytest.raises(JournalKeyMissing, match="is keyed"):
        async with FileJournal(directory):
            pass
    with pytest.raises(JournalCorrupted, match="chain hash mismatch"):
        async with FileJournal(directory, key=b"another"):
            pass
    async with FileJournal(directory, key=b"secret") as journal:
        assert await journal.stream_version("s") == 1
    assert verify_journal(directory, key=b"secret").intact


@pytest.mark.anyio
async def test_events_without_their_commit_record_are_cut(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    await _write(directory, APPENDS[:3])
    without_clean_close(directory)  # The record below stands for a crash.
    segment = directory / SEGMENT
    size = segment.stat().st_size
    # A whole, valid event record whose batch never got its commit record.
    orphan = encode_event(7, 2, 0, b"s0", b"E", b"", b"{}")
    with segment.open("ab") as file:
        file.write(orphan)
    events, journal = await _read_all(directory)
    assert len(events) == 6
    (tail,) = journal.recovery_report.torn_tails
    assert (tail.offset, tail.bytes_cut) == (size, len(orphan))
    assert "no commit record" in tail.reason
    assert segment.stat().st_size == size


@pytest.mark.anyio
async def test_an_interrupted_segment_creation_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    await _write(directory, APPENDS[:3])
    without_clean_close(directory)  # The file below stands for a crash.
    torn = directory / "00000000000000000007.log"
    torn.write_bytes(b"EVFLDSEG\x01")
    events, journal = await _read_all(directory)
    assert len(events) == 6
    assert not torn.exists()
    assert [t.path for t in journal.recovery_report.torn_tails] == [str(torn)]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [SEGMENT_HEADER_BYTES - 1, SEGMENT_HEADER_BYTES])
async def test_a_new_segment_of_zeros_up_to_a_whole_header_is_a_torn_creation(
    tmp_path: Path, size: int
) -> None:
    """A file system may store a new file's size before its data: a roll cut short then leaves
    zeros where the header belongs, up to all 64 bytes of it (an invalid header, no records)."""
    directory = tmp_path / "journal"
    await _write(directory, APPENDS[:3])
    without_clean_close(directory)  # The file below stands for a crash.
    torn = directory / "00000000000000000007.log"  # Named for the position after the last.
    torn.write_bytes(b"\0" * size)
    events, journal = await _read_all(directory)
    assert len(events) == 6
    assert not torn.exists()
    [tail] = journal.recovery_report.torn_tails
    assert (tail.path, tail.offset, tail.bytes_cut) == (str(torn), 0, size)
    assert "incomplete header" in tail.reason


@pytest.mark.anyio
async def test_a_new_segment_longer_than_a_header_that_is_not_one_is_refused(
    tmp_path: Path,
) -> None:
    """Past the header, bytes mean a record was written after it: no torn creation, but
    damage, refused with the file left in place."""
    directory = tmp_path / "journal"
    await _write(directory, APPENDS[:3])
    without_clean_close(directory)
    torn = directory / "00000000000000000007.log"
    torn.write_bytes(b"\0" * (SEGMENT_HEADER_BYTES + 1))
    with pytest.raises(JournalCorrupted, match=r"07\.log at byte offset 0: not a journal segment"):
        await _read_all(directory)
    assert torn.stat().st_size == SEGMENT_HEADER_BYTES + 1


@pytest.mark.anyio
async def test_a_new_segment_of_a_whole_valid_header_is_kept(tmp_path: Path) -> None:
    """A roll that created the segment and synced its header, then crashed before the first
    batch: the segment is whole, with no events, and stays the last one."""
    directory = tmp_path / "journal"
    await _write(directory, APPENDS[:3])
    without_clean_close(directory)
    head = bytes.fromhex(verify_journal(directory).head_hash)
    new = directory / "00000000000000000007.log"
    new.write_bytes(encode_segment_header(7, head, keyed=False))
    events, journal = await _read_all(directory)
    assert len(events) == 6
    assert journal.recovery_report.torn_tails == ()
    assert new.stat().st_size == SEGMENT_HEADER_BYTES


@pytest.mark.anyio
async def test_damage_inside_the_last_batch_before_its_commit_record_is_a_torn_tail(
    written: Path, tmp_path: Path
) -> None:
    # A crash can persist a write's pages out of order: the commit record at the end reached
    # the disk, a page before it did not. That batch's fsync never returned: it was never
    # acknowledged, so recovery cuts it rather than refusing the journal.
    copy = tmp_path / "journal"
    shutil.copytree(written, copy)
    without_clean_close(copy)  # The damage below stands for a crash.
    segment = copy / SEGMENT
    data = segment.read_bytes()
    ends = _commit_ends(data)
    last_batch = ends[-2]
    raw = bytearray(data)
    raw[last_batch + 8 : last_batch + 40] = bytes(32)  # A lost page inside its first record.
    segment.write_bytes(bytes(raw))
    events, journal = await _read_all(copy)
    assert len(events) == len(_expected_prefix(10_000)) - len(APPENDS[-1][1])
    (tail,) = journal.recovery_report.torn_tails
    assert (tail.offset, tail.bytes_cut) == (last_batch, len(data) - last_batch)
    assert "whose commit record at offset" in tail.reason


@pytest.mark.anyio
async def test_damage_in_an_earlier_batch_of_the_last_segment_is_corruption(
    written: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "journal"
    shutil.copytree(written, copy)
    segment = copy / SEGMENT
    data = segment.read_bytes()
    second_last_batch = _commit_ends(data)[-3]
    raw = bytearray(data)
    raw[second_last_batch + 8 : second_last_batch + 40] = bytes(32)
    segment.write_bytes(bytes(raw))
    with pytest.raises(JournalCorrupted, match="followed by a valid commit record") as caught:
        await _read_all(copy)
    assert caught.value.offset == second_last_batch
