"""What the read-only tools leave out at the end of a journal, and why.

``read_journal_files`` and ``export_checkpoint`` hand out only what opening keeps and what is
durable. At the end of the journal that leaves out: a torn tail of the last segment and a
last segment file without its whole header (what a crash left, or, in a journal that is open,
what it is writing), and, of a journal that is open, the last batch of the last segment, the
only one whose fdatasync may not have returned (a journal writes one batch at a time, and
rolls only after the last batch of the segment it seals was synced), unless bytes follow it
(then the batch in flight is the one they begin). Each is a ``LeftOut``, which the tools
report, so that a journal whose only batch is in flight is not taken for an empty one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ._recovery import SegmentScan, TornTail

_OPEN = "the journal is open (a process holds its lock)"


@dataclass(frozen=True, slots=True)
class LeftOut:
    """Bytes at the end of a journal that ``read_journal_files`` did not yield events of, or
    that ``export_checkpoint`` did not anchor, and why (``str()``: file, offset and reason).

    ``events``: how many events among them were asked for (of the last batch of a journal
    that is open, which may still be waiting for its fdatasync: for a listing, those from its
    ``from_position`` and of its ``stream_id``; for a checkpoint, all); 0 for bytes that are
    no committed batch (a torn tail, a torn segment creation). ``journal_open``: whether a
    process held the journal's lock once the segments were read; then a torn tail or segment
    creation is one that journal is writing (or one whose write failed), not one a crash left.
    """

    path: str
    offset: int
    bytes_left_out: int
    events: int
    journal_open: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.path} at byte offset {self.offset}: {self.reason}"


def last_batch_in_flight(scan: SegmentScan, dropped: TornTail | None) -> bool:
    """Whether the last batch of the last segment ``scan`` of a journal that is open may
    still be waiting for its fdatasync. Not when bytes follow it: a journal begins to write
    the next batch (a torn tail, read halfway through its write) or to create the next
    segment (``dropped``) only once that fdatasync returned."""
    return scan.batches > 0 and scan.tail is None and dropped is None


def durable_events(scan: SegmentScan, dropped: TornTail | None, is_open: bool) -> int:
    """How many of the last segment's events are durable: all of them, but the last batch's
    when the journal is open and that batch may still be in flight."""
    if not (is_open and last_batch_in_flight(scan, dropped)):
        return scan.event_count
    if scan.batches < 2:
        return 0  # Only the one that may be in flight.
    return bisect.bisect_left(scan.offsets, scan.commits[-2])


def left_out_at_the_end(
    last: SegmentScan | None,
    dropped: TornTail | None,
    is_open: bool,
    *,
    from_position: int = 1,
    stream_id: str | None = None,
) -> tuple[LeftOut, ...]:
    """What a tool that reads the last segment ``last`` (and found the torn segment creation
    ``dropped`` after it) leaves out; ``is_open``: whether a journal held the lock once the
    segments were read. A listing's ``from_position`` and ``stream_id`` count the events
    among them that it would have yielded."""
    left_out: list[LeftOut] = []
    if last is not None:
        count = durable_events(last, dropped, is_open)
        if count < last.event_count:
            left_out.append(_last_batch(last, count, from_position, stream_id))
        if last.tail is not None:
            left_out.append(_torn_tail(last.tail, is_open))
    if dropped is not None:
        left_out.append(_torn_creation(dropped, is_open))
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
        f"{scan.durable_end - offset} bytes left out: {_OPEN}, and they are its last batch "
        f"({_events(events)}, {which}{of_them}), whose fdatasync may not have returned: a "
        f"power cut may still take it away. A later read has it once another batch follows it "
        f"or the journal has closed",
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
    """A last segment file without its whole header: of a journal that is open, one it is
    creating (a roll, or the first segment of a new journal); else what a crash left."""
    if is_open:
        reason = (
            f"{_OPEN}, and this segment file has no complete header yet: one it is creating "
            f"(or whose creation failed). Not damage"
        )
    else:
        reason = (
            "a segment file with an incomplete header, as a crash while creating it leaves "
            "it, not damage; opening the journal removes it"
        )
    return _left_unread(dropped, is_open, reason)


def _left_unread(torn: TornTail, is_open: bool, reason: str) -> LeftOut:
    said = f"{torn.bytes_cut} bytes left out: {reason}"
    return LeftOut(torn.path, torn.offset, torn.bytes_cut, 0, is_open, said)


def _events(count: int) -> str:
    return "1 event" if count == 1 else f"{count} events"
