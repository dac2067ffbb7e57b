"""What the committer says and undoes when it stops on an error that is not a disk's.

A write or fsync that fails raises ``OSError``, which the committer expects. Anything else it
meets while it commits a batch (a bug, ``MemoryError``, an ``OverflowError`` from an index
array) fails the journal the same way (fail-stop), and the answer each append gets depends on
how far its batch got:

* not synced (the writer's chain hash did not move): ``JournalFailed``, not acknowledged, as
  after a failed fsync; its bytes may have reached the file, and reopening finds it whole or
  not at all;
* synced, not (fully) published: ``JournalFailedAfterSync``; the batch is durable (written
  only, with ``durable=False``: no fsync is made then) and reopening finds it, so its
  appenders must not be told it failed, nor that it is acknowledged by a journal whose reads
  do not show it. What the publishing changed in the index is undone
  (``unpublish``), so reads keep showing exactly the batches acknowledged before;
* published: acknowledged, as any committed batch.

Appends queued behind it were never written and get ``JournalFailed``.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from ._index import JournalIndex, SegmentIndex

if TYPE_CHECKING:
    from ._committer import Batch


def unexpected_failure(error: BaseException) -> str:
    """The answer of appends the failed committer did not make durable, and of later ones."""
    return (
        f"the journal's committer stopped on an unexpected error ({error!r}; the traceback is "
        f"logged by 'journals.file'), so this append was not acknowledged (it may or may not be "
        f"on disk: reopening finds it whole or not at all) and the journal accepts no more "
        f"appends. It is a bug or an exhausted resource, not a disk error: reopen the journal "
        f"to recover the durable prefix, and report the traceback if it is a bug."
    )


def failed_after_sync(error: BaseException, *, durable: bool) -> str:
    """The answer of the appends of a batch that was synced but not published.

    ``durable``: whether the journal fsyncs its batches. Without it (``durable=False``) the
    batch was only written: no fsync was made, and a crash of the machine may still lose it.
    """
    if durable:
        done = (
            "this append is durable but the journal failed before showing it: its batch was "
            "written and its fsync returned"
        )
        found = "Reopening the journal finds the append"
    else:
        done = (
            "this append was written but the journal failed before showing it: its batch "
            "reached the segment file, which is not fsynced (the journal was opened with "
            "durable=False)"
        )
        found = "Unless the machine crashes before the OS writes it out, reopening finds it"
    return (
        f"{done}, then the committer stopped on an unexpected error ({error!r}; the traceback "
        f"is logged by 'journals.file'). {found}, whole, at the version and position it was "
        f"given; do not append it again. This journal accepts no more appends and its reads "
        f"do not show the append: reopen it, and report the traceback if it is a bug."
    )


def unpublish(
    index: JournalIndex, batch: Batch, base: int, previous_hash: bytes, *, rolled: bool
) -> None:
    """Take out of ``index`` whatever publishing ``batch`` added before it failed.

    ``base`` is the batch's offset in its segment, ``previous_hash`` the chain hash before it,
    ``rolled`` whether the writer started a new segment for it. Runs only after a failure: it
    costs the committed batches nothing.
    """
    first = batch.first_position
    segment = index.segments[-1] if index.segments else None
    if rolled:
        if segment is not None and segment.first_position == first:
            # The index knows the new segment by now: drop it (its file stays, with the
            # batch in it, and the next open finds both).
            index.drop_last_segment()
    elif segment is not None:
        _cut_segment(segment, first, base, previous_hash)
    streams = index.streams
    for stream_id in set(batch.run_streams):
        positions = streams.get(stream_id)
        if positions is None:
            continue
        del positions[bisect.bisect_left(positions, first) :]
        if not positions:
            index.drop_stream(stream_id)
    index.head_position = first - 1


def _cut_segment(segment: SegmentIndex, first: int, base: int, previous_hash: bytes) -> None:
    """Cut ``segment``'s index back to what it held before the batch from ``first`` on."""
    del segment.offsets[first - segment.first_position :]
    if segment.commits and segment.commits[-1] >= base:
        segment.commits.pop()
    segment.durable_end = base
    segment.final_hash = previous_hash
