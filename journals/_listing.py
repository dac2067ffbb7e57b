"""A read-only listing of a FileJournal directory's events, for ``eventfold inspect``.

Nothing here takes the journal's lock or changes a file. The listing yields the events that
opening would keep and that are durable, and says afterwards what it left out at the end of
the journal (``JournalListing.left_out``, see ``_left_out``): a torn tail, a torn segment
creation, and, of a journal that is open, the last batch, whose fdatasync may not have
returned; so a journal whose only batch is in flight is not taken for an empty one.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

from ._codec import RecordError, decode_event, read_frame
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalCorrupted
from ._file_open import journal_is_open
from ._history import JournalScan, read_segment_file
from ._left_out import LeftOut, durable_events, left_out_at_the_end
from ._recovery import SegmentScan
from ._types import RecordedEvent
from ._validation import check_position_range, stream_id_bytes


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
    # may still take it away. It is left out, as export_checkpoint leaves it out, unless bytes
    # follow it (durable_events).
    is_open = journal_is_open(journal.directory)
    if pending is not None:
        count = durable_events(pending, journal.dropped, is_open)
        yield from _segment_events(pending, from_position, stream_id, count)
    return left_out_at_the_end(
        pending, journal.dropped, is_open, from_position=from_position, stream_id=stream_id
    )


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
