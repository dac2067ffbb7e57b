"""The record rules of the pure segment scan, one by one, on segments built byte by byte.

Each rule guards against a segment that no journal writes (a renamed file, a record of an
unknown kind, a batch without events, ...): opening must refuse it with the file and offset, as
``JournalCorrupted``, and never take it for a torn tail or fail with an error of its own. The
chain recomputation that lets opening trust a sealed segment's index file is held to the same
rules.
"""

from __future__ import annotations

from array import array

import pytest

from journals import JournalCorrupted
from journals._codec import (
    KIND_EVENT,
    SEGMENT_HEADER_BYTES,
    ZERO_HASH,
    chain_hash,
    encode_commit,
    encode_event,
    encode_segment_header,
    frame,
)
from journals._recovery import SegmentScan, recompute_chain, scan_segment

PATH = "00000000000000000001.log"


def _event(position: int, version: int, stream: bytes = b"s", data: bytes = b"1") -> bytes:
    return encode_event(position, version, 0, stream, b"T", b"", data)


def _batch(records: list[bytes], first: int, chain: bytes) -> tuple[bytes, bytes]:
    """The batch's records and its commit record; and the chain hash after it."""
    joined = b"".join(records)
    hashed = chain_hash(chain, joined, None)
    return joined + encode_commit(first, first + len(records) - 1, hashed), hashed


def _segment(*batches: list[bytes], header_first: int = 1) -> bytes:
    data, chain, position = (
        encode_segment_header(header_first, ZERO_HASH, keyed=False),
        ZERO_HASH,
        1,
    )
    for records in batches:
        written, chain = _batch(records, position, chain)
        data += written
        position += len(records)
    return data


def _scan(data: bytes, *, first_position: int = 1, is_last: bool = True) -> SegmentScan:
    return scan_segment(
        data,
        PATH,
        first_position=first_position,
        previous_hash=ZERO_HASH,
        key=None,
        versions={},
        is_last=is_last,
    )


def _refused(data: bytes, *, first_position: int = 1, is_last: bool = True) -> JournalCorrupted:
    with pytest.raises(JournalCorrupted) as refused:
        _scan(data, first_position=first_position, is_last=is_last)
    assert refused.value.path == PATH
    return refused.value


def test_a_well_formed_segment_scans() -> None:
    scan = _scan(_segment([_event(1, 1), _event(2, 2)], [_event(3, 1, b"t")]))
    assert (scan.event_count, scan.batches, scan.tail) == (3, 2, None)


def test_a_header_that_names_another_first_position_is_refused() -> None:
    # A segment file renamed, or another journal's: its records would be taken for others.
    refused = _refused(_segment([_event(5, 1)], header_first=1), first_position=5)
    assert refused.offset == 16
    assert "header says first position 1, expected 5" in refused.reason


@pytest.mark.parametrize("is_last", [True, False])
def test_an_event_record_shorter_than_its_fixed_header_is_refused(is_last: bool) -> None:
    short = frame(bytes([KIND_EVENT]) + bytes(5))  # A valid frame: not a torn write.
    refused = _refused(_segment([short]), is_last=is_last)
    assert refused.offset == SEGMENT_HEADER_BYTES
    assert "event record shorter than its fixed header" in refused.reason


def test_a_stream_id_that_is_not_utf8_is_refused() -> None:
    refused = _refused(_segment([_event(1, 1, stream=b"\xff")]))
    assert (refused.offset, refused.reason) == (
        SEGMENT_HEADER_BYTES,
        "stream id is not valid UTF-8",
    )


def test_a_commit_record_with_no_events_before_it_is_refused() -> None:
    header = encode_segment_header(1, ZERO_HASH, keyed=False)
    empty = encode_commit(1, 0, chain_hash(ZERO_HASH, b"", None))  # Count 0, hash right.
    refused = _refused(header + empty + _batch([_event(1, 1)], 1, ZERO_HASH)[0])
    assert (refused.offset, refused.reason) == (
        SEGMENT_HEADER_BYTES,
        "commit record with no events before it",
    )


def test_events_with_no_commit_record_end_only_the_last_segment() -> None:
    data = _segment([_event(1, 1)]) + _event(2, 2)
    committed = len(data) - len(_event(2, 2))
    tail = _scan(data).tail
    assert tail is not None
    assert (tail.offset, tail.bytes_cut) == (committed, len(_event(2, 2)))
    refused = _refused(data, is_last=False)
    assert refused.offset == committed
    assert "events with no commit record at the end of a sealed segment" in refused.reason


@pytest.mark.parametrize("is_last", [True, False])
def test_a_record_of_an_unknown_kind_is_refused(is_last: bool) -> None:
    unknown = frame(bytes([9]) + b"x" * 10)
    data = _segment([_event(1, 1)])
    refused = _refused(data + unknown, is_last=is_last)
    assert (refused.offset, refused.reason) == (len(data), "unknown record kind 9")


def test_a_record_as_long_as_a_commit_after_damage_is_not_taken_for_one() -> None:
    # After a bad record, the search for a surviving commit record goes by its length: an
    # event of that length is no commit, and the damage is a torn tail.
    data = _segment([_event(1, 1)])
    damaged = bytearray(_event(2, 2))
    damaged[-1] ^= 0xFF
    as_long = _event(3, 3, data=b"x" * 20)
    assert len(as_long) == len(encode_commit(1, 1, ZERO_HASH))
    tail = _scan(data + bytes(damaged) + as_long).tail
    assert tail is not None
    assert (tail.offset, tail.bytes_cut) == (len(data), len(damaged) + len(as_long))


# -- the chain recomputed from a sealed segment's commit records ------------------------------


def _recomputed(data: bytes, commits: list[int], offsets: list[int]) -> bytes | None:
    return recompute_chain(
        data,
        array("I", commits),
        ZERO_HASH,
        None,
        first_position=1,
        offsets=array("I", offsets),
    )


def test_the_chain_of_a_sealed_segment_is_recomputed_from_its_commit_records() -> None:
    data = _segment([_event(1, 1), _event(2, 2)], [_event(3, 1, b"t")])
    scan = _scan(data, is_last=False)
    commits, offsets = list(scan.commits), list(scan.offsets)
    assert _recomputed(data, commits, offsets) == scan.final_hash
    # Bytes after the last commit record listed: the batches do not cover the segment.
    assert _recomputed(data + _event(4, 3), commits, offsets) is None
    # An event listed that no commit record covers.
    assert _recomputed(data, commits, [*offsets, len(data) - 30]) is None
    # A commit record listed beyond the end of the file.
    assert _recomputed(data, [*commits, len(data)], offsets) is None


def test_a_commit_record_that_names_other_positions_is_not_trusted() -> None:
    first, chain = _batch([_event(1, 1)], 1, ZERO_HASH)
    records = _event(2, 2)
    hashed = chain_hash(chain, records, None)
    data = encode_segment_header(1, ZERO_HASH, keyed=False) + first + records
    commits = [len(data) - len(records) - 61, len(data)]
    data += encode_commit(5, 5, hashed)  # One event, its hash right, at position 5.
    assert _recomputed(data, commits, [64, len(first) + 64]) is None


def test_a_commit_record_of_no_events_is_not_trusted() -> None:
    batch, chain = _batch([_event(1, 1)], 1, ZERO_HASH)
    data = encode_segment_header(1, ZERO_HASH, keyed=False) + batch
    empty_at = len(data)
    data += encode_commit(2, 1, chain_hash(chain, b"", None))
    assert _recomputed(data, [empty_at - 61, empty_at], [64]) is None
