"""A sealed segment's index file: what it is trusted for, how, and when it is to blame.

Opening loads a sealed segment's index file instead of decoding the segment's events. The file
is a cache, never trusted blindly (journal-format.md, "Index file of a sealed segment"):

* its offsets and commit records are bound to the segment by recomputing the hash chain batch
  by batch (``recompute_chain``), which checks every byte of the segment at hashing speed, and
  follows the offsets from record to record (the chain covers bytes, not where records start);
* its stream map, which no hash covers, is trusted only for what opening takes from it, the
  streams' versions, and only once the segment agrees: for each stream, the record at the
  stream's last position in the segment must be an intact event of that stream at the version
  the map gives it (``index_stream_versions``). That is one record per stream, not per event,
  and it proves every count (see its docstring). Which of a stream's earlier positions in the
  segment are its own is left to reads, which check each record against the map;
* when a read finds a record that disagrees with a map loaded from an index file, the segment
  is walked again (``blame_for_read``) to say which file is wrong, so an intact segment is never
  blamed for its index file's lie; nor an intact index file for a segment changed since: its
  batches are hashed again before the index file is blamed.
"""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass

from ._codec import (
    COMMIT_FRAME_BYTES,
    EVENT_HEADER,
    EVENT_HEADER_BYTES,
    FRAME_BYTES,
    KIND_EVENT,
    SEGMENT_HEADER_BYTES,
    RecordError,
    SegmentHeader,
    chain_hash,
    decode_commit,
    decode_segment_header,
    read_frame,
)
from ._codec import index_file_name as _index_name
from ._exceptions import JournalCorrupted
from ._fileio import FileTooLarge, read_file_up_to, read_segment_file
from ._index import (
    INDEX_HEADER_BYTES,
    IndexFile,
    SegmentIndex,
    decode_index_file,
    index_file_offset_of_position,
)
from ._recovery import SegmentScan, recompute_chain

_unpack_event_header_from = EVENT_HEADER.unpack_from
# From a record's first byte: kind, position and version, then the stream id's length.
_unpack_event_fields_from = struct.Struct("<8xBQQ8xB").unpack_from
_STREAM_ID_OFFSET = FRAME_BYTES + EVENT_HEADER_BYTES
_REBUILD = "delete it and reopen the journal (opening rebuilds it from the segment)"


def load_index_file(
    directory: str,
    path: str,
    first: int,
    chain: bytes,
    segments: list[tuple[int, str]],
    number: int,
    key: bytes | None,
    versions: dict[bytes, int],
) -> SegmentScan | None:
    """A sealed segment from its index file, or None when the file cannot be trusted.

    ``versions`` (stream id to version before this segment) is updated only when the file is
    trusted. The index saves decoding events, not checking bytes: the segment's hash chain is
    still recomputed batch by batch (at hashing speed), so a changed byte is never served as
    history, and the stream versions it gives are checked against the segment.
    """
    try:
        data = read_segment_file(path)
        index_path = os.path.join(directory, _index_name(first))
        loaded = decode_index_file(read_index_file(index_path, len(data)))
        header = decode_segment_header(data)
        with open(segments[number + 1][1], "rb") as following:
            next_header = decode_segment_header(following.read(SEGMENT_HEADER_BYTES))
    except (OSError, RecordError):
        return None
    next_first = segments[number + 1][0]
    if not _bound_to_segment(loaded, data, header, next_header, next_first, chain, key):
        return None
    after = index_stream_versions(data, loaded, versions)
    if after is None:
        return None
    versions.update(after)
    return SegmentScan(
        path,
        first,
        loaded.offsets,
        loaded.streams,
        len(data),
        loaded.final_hash,
        batches=len(loaded.commits),
        commits=loaded.commits,
    )


def read_index_file(path: str, segment_bytes: int) -> bytes:
    """The bytes of the index file at ``path`` of a sealed segment of ``segment_bytes``.

    Raises ``RecordError`` without reading it for a file larger than its segment, which no
    journal writes: for each event an index file holds 21 bytes at most (its offset, its
    position, a commit offset, a stream entry's fixed bytes) where the segment holds a record
    of 40 bytes at least, each stream id once where the segment holds it in every record, and
    84 bytes besides, fewer than a segment's header and commit record. A sparse file of many
    GiB there would otherwise be read whole into memory, where opening rebuilds it.
    """
    try:
        return read_file_up_to(path, segment_bytes)
    except FileTooLarge as too_large:
        raise RecordError(
            f"the index file is {too_large.size:,} bytes long, more than its segment's "
            f"{segment_bytes:,}, which no index file is"
        ) from None


def _bound_to_segment(
    loaded: IndexFile,
    data: bytes,
    header: SegmentHeader,
    next_header: SegmentHeader,
    next_first: int,
    chain: bytes,
    key: bytes | None,
) -> bool:
    """Whether the index file's offsets, commit records and final hash are its segment's."""
    first = loaded.first_position
    return (
        header.first_position == first
        and header.previous_hash == chain
        and header.keyed == (key is not None)
        and loaded.segment_bytes == len(data)
        and loaded.final_hash == next_header.previous_hash
        and next_first == first + len(loaded.offsets)
        and recompute_chain(
            data, loaded.commits, chain, key, first_position=first, offsets=loaded.offsets
        )
        == loaded.final_hash
    )


def index_stream_versions(
    data: bytes, loaded: IndexFile, versions: dict[bytes, int]
) -> dict[bytes, int] | None:
    """Each stream's version after the segment, as its index file gives it, once the segment
    agrees; None when it does not.

    ``versions`` holds each stream's version before the segment. For every stream of the map,
    the record at the stream's last position in the segment must be an event of that stream,
    at that position, whose version is the stream's version before the segment plus the
    positions the map gives it here. That proves every count: such a record means the stream
    has at least that many events in the segment up to there (its versions are gapless and
    increase with position), so no stream's count is too high; the counts add up to the
    segment's events (the index file is refused otherwise), so none is too low either. Opening
    takes nothing else from the map: the versions are exact, whatever it says of the other
    positions. The segment's bytes were just checked against the hash chain, so the fields are
    compared without checking the record's frame again: one record per stream, not per event.
    """
    first = loaded.first_position
    offsets = loaded.offsets
    unpack = _unpack_event_fields_from
    startswith = data.startswith
    get = versions.get
    found: list[int] = []
    append = found.append
    try:
        for stream, positions in loaded.streams.items():
            last = positions[-1]
            version = get(stream, 0) + len(positions)
            offset = offsets[last - first]
            if unpack(data, offset) != (KIND_EVENT, last, version, len(stream)) or not startswith(
                stream, offset + _STREAM_ID_OFFSET
            ):
                return None
            append(version)
    except struct.error:  # An offset too close to the end for a record.
        return None
    return dict(zip(loaded.streams, found, strict=True))


# -- reads -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Walked:
    """A sealed segment's event records, found by walking its frames from the header on."""

    offsets: list[int]
    damaged_at: int | None = None  # The first frame that does not check out, if any,
    damage: str = ""  # and what is wrong with it.


def _walk(data: bytes) -> _Walked:
    offsets: list[int] = []
    offset = SEGMENT_HEADER_BYTES
    while offset < len(data):
        try:
            start, end = read_frame(data, offset)
        except RecordError as error:
            return _Walked(offsets, offset, str(error))
        if data[start] == KIND_EVENT:
            if end - start < EVENT_HEADER_BYTES:
                return _Walked(offsets, offset, "event record shorter than its fixed header")
            offsets.append(offset)
        offset = end
    return _Walked(offsets)


def _pread_whole(fd: int, length: int) -> bytes:
    """The first ``length`` bytes of the file (fewer only if it is shorter). One ``pread``
    returns at most 2 GiB less 4 KiB on Linux, and a segment may be larger: read so, its
    intact end would be taken for a torn record, and blamed instead of a lying index file."""
    parts = [os.pread(fd, length, 0)]
    done = len(parts[0])
    while done < length and parts[-1]:
        parts.append(os.pread(fd, length - done, done))
        done += len(parts[-1])
    return parts[0] if len(parts) == 1 else b"".join(parts)


def blame_for_read(
    fd: int,
    segment: SegmentIndex,
    previous_hash: bytes,
    key: bytes | None,
    position: int,
    stream: bytes | None,
    version: int,
) -> JournalCorrupted | None:
    """Which file a failed read of a segment opened from its index file blames, if not the
    record where the read stopped.

    The failed read stopped at the event at ``position`` (for a stream read: ``version`` of
    ``stream``, as the map says). Walking the segment's frames from its header says where its
    events really are: a frame that does not check out is damage of the segment (blamed where
    it is); so is an event elsewhere than the index file's offsets say, or a segment shorter
    than they say, since opening followed those offsets from record to record (the segment
    changed since); an event the index file gives to another stream or version is the index
    file's lie, unless the segment's batches no longer hash as opening found them (from
    ``previous_hash``, the chain before the segment, with ``key``): then a record was replaced
    by one of the same length since. None: the segment and its index file agree up to there,
    so the record itself is to blame (its data, say).
    """
    segment_path, index_file = segment.path, segment.index_file
    assert index_file is not None
    first_position, offsets, durable_end = (
        segment.first_position,
        segment.offsets,
        segment.durable_end,
    )
    data = _pread_whole(fd, durable_end)
    walked = _walk(data)
    if walked.damaged_at is not None:
        return JournalCorrupted(
            segment_path, walked.damaged_at, f"{walked.damage} (found while reading)", during="read"
        )
    if len(data) < durable_end:
        # Cut at a record's end: the walk finds no damage, only fewer events.
        return JournalCorrupted(
            segment_path,
            len(data),
            f"the segment ends at byte {len(data)}, before the end of its committed records "
            f"at byte {durable_end}: it was cut short since the journal opened it (found "
            f"while reading)",
            during="read",
        )
    for number, (given, found) in enumerate(itertools.zip_longest(offsets, walked.offsets)):
        if given != found:
            return _changed_since_opening(segment_path, first_position + number, given, found)
    if stream is None:
        return None
    number = position - first_position
    if not 0 <= number < len(walked.offsets):
        return None
    start = walked.offsets[number] + 8
    _, _, found_version, _, stream_length, _, _ = _unpack_event_header_from(data, start)
    found_stream = data[start + EVENT_HEADER_BYTES : start + EVENT_HEADER_BYTES + stream_length]
    if (found_stream, found_version) == (stream, version):
        return None
    changed = _batch_changed(data, segment, previous_hash, key)
    if changed is not None:
        start, commit = changed
        record = walked.offsets[number]
        what = (
            f"its batch from offset {start} to the commit record at offset {commit} no longer "
            f"hashes to that record's chain hash"
            if commit
            else "its header no longer holds the chain hash of the segment before it"
        )
        return JournalCorrupted(
            segment_path,
            record if start <= record < commit else start,
            f"the segment holds an event of stream {found_stream.decode('utf-8', 'replace')!r} "
            f"(version {found_version}) at position {position}, which the index file gives to "
            f"stream {stream.decode('utf-8', 'replace')!r} (as its version {version}), and "
            f"{what}: the segment changed since the journal opened it (found while reading)",
            during="read",
        )
    try:
        # Read only if no larger than its segment, as opening reads it: the file may have
        # been replaced since, by a sparse one of many GiB, say.
        raw = read_index_file(index_file, durable_end)
        where = index_file_offset_of_position(raw, stream, position)
    except (OSError, RecordError):
        where = None
    return JournalCorrupted(
        index_file,
        0 if where is None else where,
        f"the index file gives position {position} to stream "
        f"{stream.decode('utf-8', 'replace')!r} (as its version {version}); {segment_path} "
        f"holds an intact event of stream {found_stream.decode('utf-8', 'replace')!r} "
        f"(version {found_version}) there: the index file is wrong; {_REBUILD}",
        during="read",
    )


def _batch_changed(
    data: bytes, segment: SegmentIndex, previous_hash: bytes, key: bytes | None
) -> tuple[int, int] | None:
    """(start, commit record offset) of the first batch of ``data`` that no longer hashes to
    the chain hash of its commit record, as opening found every batch of ``segment`` did
    (``(0, 0)`` for a header that no longer names ``previous_hash``); None when all still do."""
    try:
        if decode_segment_header(data).previous_hash != previous_hash:
            return 0, 0
    except RecordError:
        return 0, 0
    view = memoryview(data)
    chain = previous_hash
    start = end = SEGMENT_HEADER_BYTES
    for commit in segment.commits:
        start, end = end, commit + COMMIT_FRAME_BYTES
        chain = chain_hash(chain, view[start:commit], key)
        try:
            if decode_commit(view[commit + FRAME_BYTES : end]).chain_hash != chain:
                return start, commit
        except RecordError:
            return start, commit
    if chain != segment.final_hash:
        # Commit records rewritten to match changed batches (which only a writer without a
        # key can do): the last one no longer holds the hash opening found there.
        return start, end - COMMIT_FRAME_BYTES
    return None


def _changed_since_opening(
    segment_path: str, position: int, given: int | None, found: int | None
) -> JournalCorrupted:
    """The segment's events are not where they were when opening followed the index file's
    offsets (``given``) from record to record: the segment changed since, not the index file.
    ``found`` is the offset of the walk's event record in the place of the event at
    ``position`` (None: no such record). Which event a record there holds is not known (it
    may be another's, or a record of another kind made an event's), so it is not said."""
    if found is None:
        what = (
            f"holds no event record at offset {given}, where the event at position {position} was"
        )
    elif given is None:
        what = f"holds an event record at offset {found}, after the last event it held"
    elif found > given:
        what = (
            f"holds no event record at offset {given}, where the event at position {position} "
            f"was (the next event record is at offset {found})"
        )
    else:
        what = (
            f"holds an event record at offset {found}, before offset {given} where the event "
            f"at position {position} was"
        )
    offset = min(where for where in (given, found) if where is not None)
    return JournalCorrupted(
        segment_path,
        offset,
        f"the segment {what} when the journal opened it: the segment changed since (found "
        f"while reading)",
        during="read",
    )


# -- verify ------------------------------------------------------------------------------------


def first_disagreement(raw: bytes, loaded: IndexFile, scan: SegmentScan) -> tuple[int, str]:
    """Where the index file ``raw`` (decoded: ``loaded``) first disagrees with the scan of its
    segment, and how: (byte offset in the index file, what it says against the segment)."""
    for number, (given, found) in enumerate(itertools.zip_longest(loaded.offsets, scan.offsets)):
        if given != found:
            return (
                INDEX_HEADER_BYTES + 4 * number,
                f"it places the event at position {scan.first_position + number} at offset "
                f"{given}, the segment holds it at offset {found}",
            )
    owners: dict[int, bytes] = {}
    for stream, positions in scan.streams.items():
        owners.update(dict.fromkeys(positions, stream))
    wrong = [
        (position, stream)
        for stream, positions in loaded.streams.items()
        for position in positions
        if owners.get(position) != stream
    ]
    if wrong:
        position, stream = min(wrong)
        where = index_file_offset_of_position(raw, stream, position)
        owner = owners.get(position, b"")
        return (
            0 if where is None else where,
            f"it gives position {position} to stream {stream.decode('utf-8', 'replace')!r}, "
            f"the segment holds an event of stream {owner.decode('utf-8', 'replace')!r} there",
        )
    return 0, "its commit records, final hash or segment length are not the segment's"
