"""Recovery scanning: pure functions that check a segment's bytes and say what is durable.

``scan_segment`` walks one segment record by record: it checks every frame, every position and
stream version, every commit record and the hash chain, and answers what the segment durably
holds plus, for the last segment, the torn tail to cut. Anything that is not a torn tail raises
``JournalCorrupted`` with the file and the byte offset; a keyed journal read without a key
raises ``JournalKeyMissing``. No files are opened here.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from array import array
from dataclasses import dataclass, field

from ._codec import (
    COMMIT_BODY,
    COMMIT_BODY_BYTES,
    COMMIT_FRAME_BYTES,
    EVENT_HEADER,
    EVENT_HEADER_BYTES,
    FRAME,
    FRAME_BYTES,
    HASH_BYTES,
    KIND_COMMIT,
    KIND_EVENT,
    LENGTH,
    SEGMENT_HEADER_BYTES,
    SEGMENT_KEY_CHECK_OFFSET,
    RecordError,
    chain_hash,
    crc32,
    decode_commit,
    decode_segment_header,
    key_check,
    read_frame,
)
from ._exceptions import JournalCorrupted, JournalKeyMissing
from ._validation import check_key

_unpack_event_header_from = EVENT_HEADER.unpack_from
_COMMIT_LENGTH_BYTES = LENGTH.pack(COMMIT_BODY_BYTES)


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes a crash left unfinished that opening cut, and why: a torn tail of the last
    segment or of ``snapshots.dat`` (a torn header of that file: offset 0, written again), or
    a torn segment creation (the file removed: offset 0, its size)."""

    path: str
    offset: int
    bytes_cut: int
    reason: str


@dataclass(slots=True)
class SegmentScan:
    """What one segment durably holds.

    Invariant: ``offsets[i]`` is the byte offset of the event at position
    ``first_position + i``; ``streams`` maps a stream id to its positions in this segment.
    """

    path: str
    first_position: int
    offsets: array[int]
    streams: dict[bytes, array[int]]
    durable_end: int
    final_hash: bytes
    tail: TornTail | None = None
    batches: int = 0
    commits: array[int] = field(default_factory=lambda: array("I"))

    @property
    def event_count(self) -> int:
        return len(self.offsets)

    @property
    def last_position(self) -> int:
        return self.first_position + len(self.offsets) - 1


def find_commit_after(data: bytes, start: int) -> int:
    """The offset of the first valid commit record at or after ``start``, or -1.

    Framing is lost after a bad record, so every candidate offset is tried; commit records have
    a fixed length, which makes the search a ``bytes.find`` for their length field.
    """
    candidate = data.find(_COMMIT_LENGTH_BYTES, start)
    while candidate != -1:
        try:
            body_start, _ = read_frame(data, candidate)
        except RecordError:
            pass
        else:
            if data[body_start] == KIND_COMMIT:
                return candidate
        candidate = data.find(_COMMIT_LENGTH_BYTES, candidate + 1)
    return -1


def recompute_chain(
    data: bytes,
    commits: array[int],
    previous_hash: bytes,
    key: bytes | None,
    *,
    first_position: int,
    offsets: array[int],
) -> bytes | None:
    """Recompute a sealed segment's chain batch by batch, from its commit record offsets.

    Answers the final hash when every batch hashes to what its commit record holds, every
    commit record is whole (frame length and checksum, kind, first/last/count matching the
    events before it per ``offsets``, the index's event offsets), the batches cover the
    segment exactly and ``offsets`` are where the batches' records start; None otherwise (then
    the segment must be scanned). This checks every byte of the segment at hashing speed,
    without decoding events; the commit records' own checks cost one 57-byte checksum per
    batch, the offsets one length field per event.

    The offsets are followed from record to record because the chain covers bytes, not where
    records start: an offset into the middle of a record (at bytes that look like a whole
    event frame, in a stream id say) would pass every other check here, and reads would serve
    as history an event the journal never wrote. Walked from the batch's start, each offset
    must be where the record before it ends, and the last record must end at the commit record.
    """
    view = memoryview(data)
    chain = previous_hash
    start = SEGMENT_HEADER_BYTES
    new_hash = hashlib.blake2b
    secret = key or b""
    size = len(data)
    unpack_frame = FRAME.unpack_from
    unpack_commit = COMMIT_BODY.unpack_from
    unpack_length = LENGTH.unpack_from
    events_before = bisect.bisect_left
    position = first_position  # Of the next batch's first event.
    counted = 0  # Events in the batches checked so far.
    # Per batch: hash its event frames, compare with the hash field of its commit record.
    for offset in commits:
        if offset < start or offset + COMMIT_FRAME_BYTES > size:
            return None
        events = events_before(offsets, offset) - counted
        record = start
        for number in range(counted, counted + events):
            # Invariant: record < offset, so the length field lies within the segment.
            if offsets[number] != record:
                return None
            record += FRAME_BYTES + unpack_length(data, record)[0]
            if record > offset:
                return None
        if record != offset:
            return None
        hasher = new_hash(chain, digest_size=HASH_BYTES, key=secret)
        hasher.update(view[start:offset])
        chain = hasher.digest()
        body = offset + FRAME_BYTES
        end = body + COMMIT_BODY_BYTES
        length, checksum = unpack_frame(data, offset)
        kind, first, last, count, hashed = unpack_commit(data, body)
        if (
            length != COMMIT_BODY_BYTES
            or crc32(view[body:end], crc32(view[offset : offset + LENGTH.size])) != checksum
            or kind != KIND_COMMIT
            or hashed != chain
            or first != position
            or count != events
            or last != first + count - 1
            or count < 1
        ):
            return None
        position += count
        counted += count
        start = end
    return chain if start == size and counted == len(offsets) else None


def _own_commit_at_end(data: bytes, offset: int, batch_first: int) -> bool:
    """Whether the commit record at ``offset`` ends the file and closes the batch that starts
    at position ``batch_first`` (so no complete batch lies between the damage and the end)."""
    if offset + COMMIT_FRAME_BYTES != len(data):
        return False
    commit = decode_commit(data[offset + FRAME_BYTES :])
    return commit.first_position == batch_first


def scan_segment(
    data: bytes,
    path: str,
    *,
    first_position: int,
    previous_hash: bytes,
    key: bytes | None,
    versions: dict[bytes, int],
    is_last: bool,
) -> SegmentScan:
    """Check ``data`` (a whole segment file) and answer what it durably holds.

    ``versions`` maps stream ids to their versions before this segment; it is updated with the
    segment's committed events. In the last segment (``is_last``) a bad or partial record with
    no valid commit record after it, and events with no commit record after them, form the torn
    tail; everywhere else they are corruption.
    """

    def corrupted(offset: int, reason: str) -> JournalCorrupted:
        return JournalCorrupted(path, offset, reason)

    check_key(key)  # Pair assertion: an empty key would pass the keyed flag and hash unkeyed.
    try:
        header = decode_segment_header(data)
    except RecordError as error:
        raise corrupted(0, str(error)) from None
    if header.first_position != first_position:
        raise corrupted(
            16, f"header says first position {header.first_position}, expected {first_position}"
        )
    if header.previous_hash != previous_hash:
        raise corrupted(24, "previous hash does not match the previous segment's last hash")
    if header.keyed and key is None:
        if first_position == 1:  # The journal's first segment: the journal is keyed.
            raise JournalKeyMissing(os.path.dirname(path))
        raise corrupted(10, "the segment was written with a key, the segments before it without")
    if key is not None and not header.keyed:
        # Tamper evidence (a chain rewritten without the key), or the key of another journal.
        raise corrupted(10, "the journal was written without a key; open it without one")
    # With no batch, the chain checks no key: the header's key check then does.
    wrong_key = (
        _another_key(path, key, header.key_check)
        if header.key_check is not None and key is not None and header.key_check != key_check(key)
        else None
    )

    offsets: array[int] = array("I")
    commits: array[int] = array("I")
    # Every offset is below this: a batch's commit record follows its events, so one
    # comparison per batch keeps every offset within what the index's arrays hold.
    offset_limit = 1 << (8 * offsets.itemsize)
    streams: dict[bytes, array[int]] = {}
    batch_offsets: list[int] = []
    batch_streams: list[bytes] = []
    pending: dict[bytes, int] = {}
    next_position = first_position
    chain = previous_hash
    offset = durable_end = batch_start = SEGMENT_HEADER_BYTES
    batches = 0
    size = len(data)
    unpack = _unpack_event_header_from
    while offset < size:
        try:
            start, end = read_frame(data, offset)
        except RecordError as error:
            if not is_last:
                raise corrupted(offset, str(error)) from None
            found = find_commit_after(data, offset + 1)
            batch_first = next_position - len(batch_offsets)
            if found != -1 and not _own_commit_at_end(data, found, batch_first):
                raise corrupted(
                    offset, f"{error}, followed by a valid commit record at offset {found}"
                ) from None
            reason = f"{error} at offset {offset}"
            if found != -1:
                # The batch's own commit record reached the disk but some of its earlier
                # bytes did not: a write cut by a crash, persisted out of order. That batch
                # was never acknowledged (its fsync had not returned), so it is a torn tail.
                reason += f" in the last batch, whose commit record at offset {found} survived"
            return _result(
                wrong_key,
                path,
                first_position,
                offsets,
                commits,
                streams,
                durable_end,
                chain,
                batches,
                TornTail(path, durable_end, size - durable_end, reason),
            )
        kind = data[start]
        if kind == KIND_EVENT:
            if end - start < EVENT_HEADER_BYTES:
                raise corrupted(offset, "event record shorter than its fixed header")
            _, position, version, _, stream_length, type_length, metadata_length = unpack(
                data, start
            )
            type_start = start + EVENT_HEADER_BYTES + stream_length
            stream = data[start + EVENT_HEADER_BYTES : type_start]
            if (
                not stream_length
                or not type_length
                or type_start + type_length + metadata_length > end
            ):
                raise corrupted(offset, _field_rule_broken(stream_length, type_length))
            if position != next_position:
                raise corrupted(offset, f"event position {position}, expected {next_position}")
            expected = pending.get(stream)
            if expected is None:
                expected = versions.get(stream)
                if expected is None:  # A stream's first event: its id must be UTF-8.
                    expected = 0
                    try:
                        stream.decode("utf-8")
                    except UnicodeDecodeError:
                        raise corrupted(offset, "stream id is not valid UTF-8") from None
            if version != expected + 1:
                raise corrupted(
                    offset,
                    f"stream {stream.decode('utf-8', 'replace')!r} version {version}, "
                    f"expected {expected + 1}",
                )
            pending[stream] = version
            batch_offsets.append(offset)
            batch_streams.append(stream)
            next_position += 1
        elif kind == KIND_COMMIT:
            try:
                commit = decode_commit(data[start:end])
            except RecordError as error:
                raise corrupted(offset, str(error)) from None
            if not batch_offsets:
                raise corrupted(offset, "commit record with no events before it")
            first = next_position - len(batch_offsets)
            if (commit.first_position, commit.last_position, commit.event_count) != (
                first,
                next_position - 1,
                len(batch_offsets),
            ):
                raise corrupted(
                    offset,
                    f"commit record names positions {commit.first_position}.."
                    f"{commit.last_position}, the batch holds {first}..{next_position - 1}",
                )
            if offset >= offset_limit:
                raise _beyond_offsets(path, batch_start, offset_limit)
            hashed = chain_hash(chain, data[batch_start:offset], key)
            if hashed != commit.chain_hash:
                raise corrupted(
                    offset, _chain_mismatch(chain, data[batch_start:offset], key, commit.chain_hash)
                )
            chain = hashed
            offsets.extend(batch_offsets)
            for stream, position in zip(batch_streams, range(first, next_position), strict=True):
                positions = streams.get(stream)
                if positions is None:
                    positions = streams[stream] = array("Q")
                positions.append(position)
            versions.update(pending)
            batch_offsets.clear()
            batch_streams.clear()
            pending.clear()
            batches += 1
            commits.append(offset)
            durable_end = batch_start = end
        else:
            raise corrupted(offset, f"unknown record kind {kind}")
        offset = end
    tail = None
    if batch_offsets:
        if not is_last:
            raise corrupted(
                durable_end, "events with no commit record at the end of a sealed segment"
            )
        tail = TornTail(
            path,
            durable_end,
            size - durable_end,
            f"{len(batch_offsets)} events of a batch with no commit record",
        )
    return _result(
        wrong_key,
        path,
        first_position,
        offsets,
        commits,
        streams,
        durable_end,
        chain,
        batches,
        tail,
    )


_NEWLINE_HINT = (
    "; the key given ends with a newline, and without it is the journal's key: a key is its "
    "exact bytes, so give it without the newline (a key file written by 'echo' ends with one)"
)


def _without_newline(key: bytes) -> bytes | None:
    """The key without the line ending a text editor or ``echo`` adds, if it ends with one."""
    bare = key.rstrip(b"\r\n")
    return bare if bare != key and bare else None


def _chain_mismatch(previous_hash: bytes, batch: bytes, key: bytes | None, kept: bytes) -> str:
    """Why a batch does not hash to the chain hash ``kept`` in its commit record."""
    reason = "chain hash mismatch: the batch before it was altered"
    if key is None:
        return reason
    reason += (
        ", or the key is not the one the journal was written with (a wrong key gives the same "
        "mismatch; check the key first)"
    )
    bare = _without_newline(key)
    if bare is not None and chain_hash(previous_hash, batch, bare) == kept:
        reason += _NEWLINE_HINT
    return reason


def _another_key(path: str, key: bytes | None, check: int | None) -> JournalCorrupted:
    """The refusal of a key that the segment header's key check ``check`` does not match."""
    reason = (
        "the journal was written with another key (the key check in the segment header "
        "differs); open it with the key it was written with"
    )
    bare = None if key is None else _without_newline(key)
    if bare is not None and key_check(bare) == check:
        reason += _NEWLINE_HINT
    return JournalCorrupted(path, SEGMENT_KEY_CHECK_OFFSET, reason)


def _beyond_offsets(path: str, batch_start: int, offset_limit: int) -> JournalCorrupted:
    """The refusal of a batch whose records lie beyond the offsets a segment's index holds."""
    return JournalCorrupted(
        path,
        batch_start,
        f"the batch from this offset has records at byte offset {offset_limit:,} or beyond, "
        f"further than the 32-bit offsets of a segment's index reach; only an earlier version, "
        f"without the 1 GiB limit on one append, writes such a batch, and it could not "
        f"acknowledge the batch either (its committer stopped on it)",
        advice="The journal refuses to open rather than leave the batch out. Nothing "
        "acknowledged is in that batch: to open the journal without it, keep a copy of the "
        f"file, cut it at byte offset {batch_start} (for example with 'truncate -s "
        f"{batch_start}') and remove the directory's 'closed-cleanly' file if there is one.",
    )


def _field_rule_broken(stream_length: int, type_length: int) -> str:
    """What is wrong with an event record whose field lengths were refused."""
    if not stream_length:
        return "event record with an empty stream id"
    if not type_length:
        return "event record with an empty event type"
    return "event record field lengths exceed the record"


def _result(
    wrong_key: JournalCorrupted | None,
    path: str,
    first_position: int,
    offsets: array[int],
    commits: array[int],
    streams: dict[bytes, array[int]],
    durable_end: int,
    chain: bytes,
    batches: int,
    tail: TornTail | None,
) -> SegmentScan:
    if wrong_key is not None and batches == 0:
        raise wrong_key
    return SegmentScan(
        path, first_position, offsets, streams, durable_end, chain, tail, batches, commits
    )
