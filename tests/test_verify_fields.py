"""Records that break a field rule behind valid checksums and a valid chain (a buggy writer's).

Opening refuses those that break the record's structure (an empty stream id or type, field
lengths beyond the record); verify also reports those whose type is not UTF-8, whose data is
not JSON or whose metadata is not a JSON object, which opening accepts and reads refuse.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, read_journal_files, verify_journal
from journals._codec import (
    EVENT_HEADER,
    KIND_EVENT,
    ZERO_HASH,
    chain_hash,
    encode_commit,
    encode_segment_header,
    frame,
)


def _body(
    stream: bytes,
    event_type: bytes,
    data: bytes = b"{}",
    metadata: bytes = b"",
    type_length: int | None = None,
) -> bytes:
    header = EVENT_HEADER.pack(
        KIND_EVENT,
        1,
        1,
        0,
        len(stream),
        len(event_type) if type_length is None else type_length,
        len(metadata),
    )
    return header + stream + event_type + metadata + data


def _write_segment(directory: Path, body: bytes, *, then_torn: bool = False) -> None:
    """A segment of one batch of ``body``; ``then_torn``: and a partial record after it."""
    batch = frame(body)
    chain = chain_hash(ZERO_HASH, batch, None)
    contents = encode_segment_header(1, ZERO_HASH, keyed=False) + batch
    contents += encode_commit(1, 1, chain)
    if then_torn:
        contents += b"\x30\x00\x00\x00\x01\x02"
    (directory / "00000000000000000001.log").write_bytes(contents)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_body(b"", b"T"), "empty stream id"),
        (_body(b"s", b""), "empty event type"),
        (_body(b"s", b"T", b"1", type_length=250), "field lengths exceed the record"),
        (_body(b"s", b"T", b"{not json"), "not valid JSON"),
        (_body(b"s", b"T", b"1", metadata=b"[1]"), "metadata is not a JSON object"),
    ],
)
def test_verify_reports_records_that_break_field_rules(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    _write_segment(tmp_path, body)
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.offset, problem.path) == (64, str(tmp_path / "00000000000000000001.log"))
    assert reason in problem.reason


def test_a_well_formed_record_verifies(tmp_path: Path) -> None:
    _write_segment(tmp_path, _body(b"s", b"T", b"1", metadata=b'{"m":1}'))
    assert verify_journal(tmp_path).problem is None


def _open(directory: Path) -> None:
    async def open_and_close() -> None:
        async with FileJournal(directory):
            pass

    anyio.run(open_and_close)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_body(b"", b"T"), "empty stream id"),
        (_body(b"s", b""), "empty event type"),
        (_body(b"s", b"T", b"1", type_length=250), "field lengths exceed the record"),
    ],
)
def test_opening_refuses_records_that_break_structural_field_rules(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    """Opening decodes the record's fixed header and ids anyway: it checks their rules too."""
    _write_segment(tmp_path, body)
    segment = tmp_path / "00000000000000000001.log"
    before = segment.read_bytes()
    with pytest.raises(JournalCorrupted, match=reason) as caught:
        _open(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(segment), 64)
    assert segment.read_bytes() == before
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(segment), 64)
    assert "opening does not decode" not in problem.reason


@pytest.mark.parametrize(
    "body",
    [
        _body(b"s", b"T", b"{not json"),
        _body(b"s", b"T", b"1", metadata=b"[1]"),
        _body(b"s", b"\xff", b"1"),
    ],
)
def test_data_that_is_not_json_is_left_to_verify_and_reads(tmp_path: Path, body: bytes) -> None:
    """Opening does not parse event data (journal-format.md says why): verify reports it as a
    problem that opening accepts, and still reports what else it finds (here a torn tail, which
    is no damage)."""
    _write_segment(tmp_path, body, then_torn=True)
    segment = str(tmp_path / "00000000000000000001.log")
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert (report.problem.path, report.problem.offset) == (segment, 64)
    assert "opening does not decode event types or parse event data, so it accepts this" in (
        report.problem.reason
    )
    assert len(report.torn_tails) == 1
    assert any(note.startswith("left by a crash") and "torn tail" in note for note in report.notes)

    async def open_and_read() -> None:
        async with FileJournal(tmp_path) as journal:
            assert len(journal.recovery_report.torn_tails) == 1
            with pytest.raises(JournalCorrupted, match=r"JSON|UTF-8"):
                [event async for event in journal.read("s")]
            with pytest.raises(JournalCorrupted, match=r"JSON|UTF-8"):
                [event async for event in journal.read_all()]

    anyio.run(open_and_read)


def test_damage_that_opening_refuses_is_the_problem_though_found_after_one_it_accepts(
    tmp_path: Path,
) -> None:
    """The problem answered first is the one that keeps the journal from opening at all,
    wherever it is; a problem that only reads fail on, earlier in the journal, is said too."""
    _write_segment(tmp_path, _body(b"s", b"T", b"{not json"))
    first = tmp_path / "00000000000000000001.log"
    # The next segment, whose header does not carry on the first one's hash chain.
    second = tmp_path / "00000000000000000002.log"
    second.write_bytes(encode_segment_header(2, ZERO_HASH, keyed=False))
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert (report.problem.path, report.problem.offset) == (str(second), 24)
    assert "previous hash does not match" in report.problem.reason
    [also] = [note for note in report.notes if note.startswith("also: ")]
    assert also.startswith(f"also: {first} at byte offset 64: event data or metadata is not")
    with pytest.raises(JournalCorrupted, match="previous hash does not match") as refused:
        _open(tmp_path)
    assert refused.value.path == str(second)


def test_reading_the_files_refuses_data_that_is_not_json_as_damage(tmp_path: Path) -> None:
    _write_segment(tmp_path, _body(b"s", b"T", b"{not json"))
    with pytest.raises(
        JournalCorrupted, match="event data or metadata is not valid JSON"
    ) as caught:
        list(read_journal_files(tmp_path))
    assert (caught.value.path, caught.value.offset) == (
        str(tmp_path / "00000000000000000001.log"),
        64,
    )
