"""Read-only checks of a FileJournal directory, for ``eventfold verify``.

Nothing here takes the journal's lock or changes a file: a torn tail that opening would cut is
reported, not cut. It is what a crash leaves, not damage, unless the journal was closed cleanly
(then opening refuses it, and so does ``verify_journal``); in a journal that is open, it is
what the journal is writing (or failed to write), and said so. Every segment is scanned record by
record (index files are compared with the scan, never trusted), the hash chain is recomputed,
and snapshots are checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ._codec import ZERO_HASH, RecordError, decode_event, read_frame
from ._codec import index_file_name as _index_name
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._file_open import journal_is_open
from ._file_snapshots import SNAPSHOT_FILE_NAME, UnusedSnapshots
from ._files_in_place import refuse_non_files_in_place
from ._history import JournalScan, ScannedSegment, read_segment_file
from ._index import decode_index_file
from ._index_trust import first_disagreement, load_index_file, read_index_file
from ._recovery import SegmentScan, TornTail


@dataclass(frozen=True, slots=True)
class JournalProblem:
    """The first thing wrong with a journal: the file, the byte offset and what is wrong."""

    path: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} at byte offset {self.offset}: {self.reason}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify_journal`` found. ``problem`` is None when the journal holds no damage.

    ``torn_tails`` are what a crash left unfinished and opening cuts (a torn tail of the last
    segment or of the snapshot file, a torn segment creation), or, in a journal that is open,
    what it is writing: they are not damage, and are also said in ``notes``. The counts are of
    the committed history, without them.
    """

    segments: int
    events: int
    streams: int
    batches: int
    head_hash: str
    problem: JournalProblem | None
    notes: tuple[str, ...]
    torn_tails: tuple[JournalProblem, ...] = ()

    @property
    def intact(self) -> bool:
        return self.problem is None


def _check_index_file(
    directory: str, scanned: ScannedSegment, key: bytes | None
) -> str | JournalProblem | None:
    """What is wrong with a sealed segment's index file, said as what opening does with it: a
    note when opening rebuilds it, a problem when opening uses it although it is wrong."""
    scan = scanned.scan
    path = os.path.join(directory, _index_name(scan.first_position))
    if not os.path.exists(path):
        return f"{path} is missing (opening rebuilds it)"
    try:
        raw = read_index_file(path, scan.durable_end)
        loaded = decode_index_file(raw)
    except RecordError as error:
        return f"{path} is invalid: {error} (opening rebuilds it)"
    if (
        loaded.offsets == scan.offsets
        and loaded.commits == scan.commits
        and loaded.streams == scan.streams
        and loaded.final_hash == scan.final_hash
        and loaded.segment_bytes == scan.durable_end
    ):
        return None
    assert scanned.versions_before is not None
    used = load_index_file(
        directory,
        scan.path,
        scan.first_position,
        scanned.chain_before,
        scanned.segments,
        scanned.number,
        key,
        dict(scanned.versions_before),
    )
    if used is None:
        return f"{path} does not match its segment (opening rebuilds it)"
    offset, what = first_disagreement(raw, loaded, scan)
    return JournalProblem(
        path,
        offset,
        f"the index file does not match its segment: {what}. Opening uses it (the stream "
        f"versions it gives agree with the segment), and reads that rely on what it got wrong "
        f"fail; delete it and reopen the journal (opening rebuilds it from the segment)",
    )


def verify_journal(
    path: str | os.PathLike[str], *, key: bytes | bytearray | memoryview | None = None
) -> VerifyReport:
    """Check every record's checksum, the sequence of positions and versions, the hash chain,
    the index files and the snapshots of the journal in ``path``, without changing anything.

    ``problem`` is the first problem that makes opening refuse, else one that opening accepts
    but reads fail on; every other problem found is added to ``notes`` (as ``also: ...``). A
    torn tail after a crash is no problem: opening cuts it, so it is in ``torn_tails`` and
    ``notes``; after a clean close it is a problem, since opening refuses it. In a journal that
    is open (its lock is held once everything was read), the same is a batch, a segment or a
    snapshot being written, and the note says so rather than blame a crash. Snapshots are
    checked even after a problem in the segments, so a torn tail never hides damage. A keyed
    journal given no key raises ``JournalKeyMissing``: nothing can be checked without it.
    """
    directory = os.fspath(path)
    journal = JournalScan(directory, key, keep_versions=True)
    notes: list[str] = []
    segments = events = batches = 0
    streams: set[bytes] = set()
    head = ZERO_HASH
    problems: list[tuple[JournalProblem, bool]] = []  # (problem, opening refuses)
    torn_tail: TornTail | None = None  # Cut by opening, unless after a clean close.
    unfinished: list[tuple[TornTail, str]] = []  # (what opening cuts or removes, its kind)
    try:
        for scanned in journal.segments():
            if scanned.number == 0:  # The first segment, or the scan started over.
                segments = events = batches = 0
                streams.clear()
                notes.clear()
                problems.clear()
                torn_tail = None
            scan = scanned.scan
            segments += 1
            events += scan.event_count
            batches += scan.batches
            streams.update(scan.streams)
            head = scan.final_hash
            if scanned.sealed:
                found = _check_index_file(directory, scanned, journal.key)
                if isinstance(found, JournalProblem):
                    problems.append((found, False))
                elif found is not None:
                    # Opening rebuilds it through a temporary file, and refuses a directory there.
                    rebuilt = os.path.join(directory, _index_name(scan.first_position))
                    refuse_non_files_in_place(rebuilt)
                    notes.append(found)
            bad_event = _check_event_fields(scan)
            if bad_event is not None:
                problems.append((bad_event, False))
            if scan.tail is not None:
                torn_tail = scan.tail
        if journal.last is None:
            notes.append(
                f"{directory} holds no journal yet; opening it creates a new, empty journal"
            )
    except JournalCorrupted as error:
        if journal.clean is not None:
            torn_tail = None  # A clean close's end: opening refuses it rather than cut it.
        problems.append((JournalProblem(error.path, error.offset, error.reason), True))
    dropped = journal.dropped
    if dropped is not None and all(found.path != dropped.path for found, _ in problems):
        unfinished.append((dropped, _CREATION))
    if torn_tail is not None:
        unfinished.append((torn_tail, _SEGMENT_TAIL))
    try:
        # Checked even when the segments could not all be read (then without the streams'
        # versions), so a torn tail never hides damage that opening refuses.
        snapshot_tail = journal.check_snapshots()
    except JournalCorrupted as error:
        problems.append((JournalProblem(error.path, error.offset, error.reason), True))
    else:
        if snapshot_tail is not None:
            unfinished.append((snapshot_tail, _SNAPSHOT_TAIL))
    snapshots_path = os.path.join(directory, SNAPSHOT_FILE_NAME)
    for unused in journal.unused_snapshots():
        said = _unused_snapshots(unused)
        if unused.forged:
            problems.append((JournalProblem(snapshots_path, unused.offset, said), False))
        else:
            notes.append(f"{snapshots_path} at byte offset {unused.offset}: {said}")
    # Asked once everything was read, as the listing asks: in a journal that holds the lock,
    # the unfinished end is what it is writing (or failed to write), not what a crash left.
    is_open = bool(unfinished) and journal_is_open(directory)
    torn = [_unfinished(tail, kind, is_open) for tail, kind in unfinished]
    said = _OPEN if is_open else _LEFT_BY_A_CRASH
    notes.extend(f"{said}: {tail}" for tail in torn)
    problems.sort(key=lambda found: not found[1])  # Stable: the refusing ones first.
    for other, _ in problems[1:]:
        notes.append(f"also: {other}")
    first = problems[0][0] if problems else None
    return VerifyReport(
        segments, events, len(streams), batches, head.hex(), first, tuple(notes), tuple(torn)
    )


def _check_event_fields(scan: SegmentScan) -> JournalProblem | None:
    """Decode every committed event of a scanned segment as reads do, and check its fields.

    Opening checks framing, sequence, chain and each record's structure (non-empty stream id
    and type, field lengths within the record) but neither decodes event types nor parses
    data: a record whose type is not UTF-8, whose data is not JSON or whose metadata is not a
    JSON object, behind a valid checksum, opens and fails only when read. The first such
    record is the answer: a problem that does not make opening refuse.
    """
    data = read_segment_file(scan.path)
    for offset in scan.offsets:
        try:
            body_start, body_end = read_frame(data, offset)
            fields = decode_event(data[body_start:body_end])
            if not fields.stream_id:
                raise RecordError("event record with an empty stream id")
            if not fields.type:
                raise RecordError("event record with an empty event type")
            decode_data(fields.data)
            decode_metadata(fields.metadata)
        except RecordError as error:
            what = str(error)
        except ValueError as error:  # orjson.JSONDecodeError: valid frame, not JSON.
            what = f"event data or metadata is not valid JSON ({error})"
        else:
            continue
        return JournalProblem(
            scan.path,
            offset,
            f"{what}; opening does not decode event types or parse event data, so it accepts "
            f"this, but reads of this event fail",
        )
    return None


def _unused_snapshots(unused: UnusedSnapshots) -> str:
    """What verify says of snapshot records opening does not use."""
    return (
        f"{unused.reason}: {unused.counted()} of this kind, the first here; opening does not use "
        f"them (their entities are activated from their events) and a compaction of the "
        f"snapshot file removes them"
    )


_SEGMENT_TAIL = "segment tail"
_CREATION = "segment creation"
_SNAPSHOT_TAIL = "snapshot tail"
_LEFT_BY_A_CRASH = "left by a crash, not damage"
_OPEN = "the journal is open (a process holds its lock), and this is not damage"


def _unfinished(tail: TornTail, kind: str, is_open: bool) -> JournalProblem:
    """What opening would cut or remove, said as what it is: of a journal that is open, what
    it is writing (or a write of it that failed); else what a crash left."""
    if kind == _SEGMENT_TAIL:
        said = f"torn tail of {tail.bytes_cut} bytes ({tail.reason})"
        if is_open:
            said += ": a batch the journal is writing, or one whose write failed"
        else:
            said += "; opening the journal cuts it"
    elif kind == _CREATION:
        said = f"segment file of {tail.bytes_cut} bytes with an incomplete header"
        if is_open:
            said += ": one the journal is creating, or one whose creation failed"
        else:
            said += " (a crash while creating it); opening the journal removes it"
    elif tail.offset == 0:  # The snapshot file's header cut short: no snapshot after it.
        said = tail.reason
        if is_open:
            said += ": the journal is creating the file, or failed to"
        else:
            said += (
                ", as a crash while creating the file leaves it; opening writes the header again"
            )
    else:
        said = f"torn tail ({tail.reason})"
        if is_open:
            said += ": a snapshot the journal is saving, or one whose write failed"
        else:
            said += "; opening cuts it"
    return JournalProblem(tail.path, tail.offset, said)
