"""A read-only listing of a FileJournal directory's events, for ``eventfold inspect``.

Nothing here takes the journal's lock or changes a file. The listing yields the events that
opening would keep and that are durable, and says afterwards what it left out at the end of
the journal (``JournalListing.left_out``): a torn tail, a torn segment creation, and, of a
journal that is open, the last batch, whose fdatasync may not have returned. Without that,
a listing of a journal whose only batch is in flight printed nothing, as for an empty one.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from ._checkpoint import events_before_the_last_batch
from ._codec import RecordError, decode_event, read_frame
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._file_open import journal_is_open
from ._history import JournalScan, read_segment_file
from ._recovery import SegmentScan, TornTail
from ._types import RecordedEvent
from ._validation import check_position_range, stream_id_bytes

_OPEN = "the journal is open (a process holds its lock)"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """Bytes at the end of a journal whose events ``read_journal_files`` did not yield.

    ``events``: how many events among them the listing would have yielded (of the last batch
    of a journal that is open, which may still be waiting for its fdatasync, those from its
    ``from_position`` and of its ``stream_id``); 0 for bytes that are no committed batch (a
    torn tail, a torn segment creation). ``journal_open``: whether a process held the
    journal's lock once the segments were read; then a torn tail or segment creation is one
    that journal is writing (or one whose write failed), not one a crash left.
    """

    path: str
    offset: int
    bytes_left_out: int
    events: int
    journal_open: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.path} at byte offset {self.offset}: {self.reason}"


class JournalListing(Iterator[RecordedEvent]):
    """The events ``read_journal_files`` yields, in global order. Once they all were yielded,
    ``left_out`` says what at the end of the journal was not (empty until then, and when
    nothing was left out)."""

    def __init__(self, events: Generator[RecordedEvent, None, tuple[LeftOut, ...]]) -> None:
        self._events = events
        self.left_out: tuple[LeftOut, ...] = ()

    def __iter__(self) -> JournalListing:
        return self

    def __next__(self) -> RecordedEvent:
        try:
            return next(self._events)
        except StopIteration as ended:
            if ended.value is not None:  # None once the generator had ended before.
                self.left_out = ended.value
            raise


def read_journal_files(
    path: str | os.PathLike[str],
    *,
    from_position: int = 1,
    stream_id: str | None = None,
    key: bytes | bytearray | memoryview | None = None,
) -> JournalListing:
    """Yield the committed events of a journal directory, read-only, in global order.

    For tools and post-mortems: it neither locks nor changes the directory. Raises
    ``JournalKeyMissing`` for a keyed journal given no key, and ``JournalCorrupted`` at the
    first bad byte, and wherever opening the journal would refuse
    (as ``verify_journal`` reports): the events of a segment are yielded only once the next
    segment checked out, and those of the last segment once the end of the journal and the
    snapshot file did too. So a journal that opening refuses at its end (after a clean close,
    say) yields the events before its last segment, then raises; a torn tail after a crash is
    not history, and is left out as opening cuts it. Of a journal that is open (another
    process, or this one, holds its lock), the last batch is left out too: its fdatasync may
    not have returned, and a power cut may still take it away (as ``export_checkpoint``
    leaves it out). What was left out is in the listing's ``left_out`` once every event was
    yielded::

        listing = read_journal_files("data/journal")
        for event in listing:
            print(event.position, event.type)
        for left_out in listing.left_out:
            print("not listed:", left_out)

    Refuses at once, as the journal's reads do, a ``stream_id`` that no journal holds (not a
    non-empty str of at most 255 UTF-8 bytes: ``InvalidStreamId``) and a ``from_position``
    that is not a whole number from 1 (``ValueError``), rather than yield nothing.
    """
    if stream_id is not None:
        stream_id_bytes(stream_id)
    check_position_range(from_position, None)
    return JournalListing(_journal_events(path, from_position, stream_id, key))


def _journal_events(
    path: str | os.PathLike[str],
    from_position: int,
    stream_id: str | None,
    key: bytes | bytearray | memoryview | None,
) -> Generator[RecordedEvent, None, tuple[LeftOut, ...]]:
    journal = JournalScan(path, key)
    pending: SegmentScan | None = None
    for scanned in journal.segments():
        if scanned.number == 0:
            pending = None  # The scan started over: what was yielded was sealed, and stays.
        if pending is not None:
            yield from _segment_events(pending, from_position, stream_id)
            from_position = max(from_position, pending.last_position + 1)
        pending = scanned.scan
    journal.check_snapshots()
    if pending is None and journal.dropped is None:
        return ()
    # Asked once every segment was read: of a journal that holds the lock now, the last batch
    # may have been in flight when it was read (its fdatasync not returned), and a power cut
    # may still take it away. It is left out, as export_checkpoint leaves it out.
    is_open = journal_is_open(journal.directory)
    left_out: list[LeftOut] = []
    if pending is not None:
        count = pending.event_count
        if is_open:
            count = events_before_the_last_batch(pending)
            if count < pending.event_count:
                left_out.append(_last_batch(pending, count, from_position, stream_id))
        yield from _segment_events(pending, from_position, stream_id, count)
        if pending.tail is not None:
            left_out.append(_torn_tail(pending.tail, is_open))
    if journal.dropped is not None:
        left_out.append(_torn_creation(journal.dropped, is_open))
    return tuple(left_out)


def _last_batch(
    scan: SegmentScan, count: int, from_position: int, stream_id: str | None
) -> LeftOut:
    """The last batch of the last segment of a journal that is open, from its ``count``-th
    event on; its ``events`` are those the listing asked for (``from_position``, ``stream_id``)."""
    offset = scan.offsets[count]
    events = scan.event_count - count
    first = scan.first_position + count
    which = f"position {first}" if events == 1 else f"positions {first} to {scan.last_position}"
    start = max(first, from_position)
    if stream_id is None:
        asked = max(0, scan.last_position + 1 - start)
    else:
        positions = scan.streams.get(stream_id.encode("utf-8"), ())
        asked = len(positions) - bisect.bisect_left(positions, start)
    if stream_id is None and from_position <= first:
        of_them = ""
    else:
        of_them = f"; {asked} of them in what was asked for"
    return LeftOut(
        scan.path,
        offset,
        scan.durable_end - offset,
        asked,
        True,
        f"{scan.durable_end - offset} bytes not listed: {_OPEN}, and they are its last batch "
        f"({_events(events)}, {which}{of_them}), whose fdatasync may not have returned: a "
        f"power cut may still take it away. It is listed once another batch follows it or "
        f"the journal closes",
    )


def _torn_tail(tail: TornTail, is_open: bool) -> LeftOut:
    """The last segment's torn tail: of a journal that is open, a batch it is writing; else
    what a crash left."""
    if is_open:
        reason = (
            f"{_OPEN}, and they are not a committed batch ({tail.reason}): one it is writing, "
            f"or one whose write failed. Not damage"
        )
    else:
        reason = (
            f"a torn tail a crash left ({tail.reason}), not damage; opening the journal cuts it"
        )
    return _left_unread(tail, is_open, reason)


def _torn_creation(dropped: TornTail, is_open: bool) -> LeftOut:
    """A last segment file without its whole header: of a journal that is open, one a roll is
    creating; else what a crash left."""
    if is_open:
        reason = (
            f"{_OPEN}, and this segment file has no complete header yet: a roll is creating it "
            f"(or its creation failed). Not damage"
        )
    else:
        reason = (
            "a segment file with an incomplete header, as a crash while creating it leaves "
            "it, not damage; opening the journal removes it"
        )
    return _left_unread(dropped, is_open, reason)


def _left_unread(torn: TornTail, is_open: bool, reason: str) -> LeftOut:
    said = f"{torn.bytes_cut} bytes not listed: {reason}"
    return LeftOut(torn.path, torn.offset, torn.bytes_cut, 0, is_open, said)


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count} events"


def _segment_events(
    scan: SegmentScan, from_position: int, stream_id: str | None, count: int | None = None
) -> Iterator[RecordedEvent]:
    """The segment's events from ``from_position`` (of ``stream_id``), of its first ``count``
    (None: all of them)."""
    if count is None:
        count = scan.event_count
    if scan.first_position + count - 1 < from_position:
        return
    if stream_id is not None and stream_id.encode("utf-8") not in scan.streams:
        return
    data = read_segment_file(scan.path)
    start = max(0, from_position - scan.first_position)
    for index in range(start, count):
        offset = scan.offsets[index]
        try:
            body_start, body_end = read_frame(data, offset)
            fields = decode_event(data[body_start:body_end])
            if stream_id is not None and fields.stream_id != stream_id:
                continue
            event = RecordedEvent(
                fields.stream_id,
                fields.version,
                fields.position,
                fields.type,
                decode_data(fields.data),
                decode_metadata(fields.metadata),
                fields.timestamp_ns,
            )
        except RecordError as error:
            raise JournalCorrupted(scan.path, offset, str(error)) from None
        except ValueError as error:  # orjson.JSONDecodeError: valid frame, not JSON.
            raise JournalCorrupted(
                scan.path, offset, f"event data or metadata is not valid JSON ({error})"
            ) from None
        yield event
