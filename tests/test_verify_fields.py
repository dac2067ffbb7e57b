"""verify decodes every event: records that break a field rule behind valid checksums and a
valid chain (a buggy writer's) are reported, though opening, which does not decode, accepts them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from journals import verify_journal
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


def _write_segment(directory: Path, body: bytes) -> None:
    batch = frame(body)
    chain = chain_hash(ZERO_HASH, batch, None)
    contents = encode_segment_header(1, ZERO_HASH, keyed=False) + batch
    (directory / "00000000000000000001.log").write_bytes(contents + encode_commit(1, 1, chain))


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
