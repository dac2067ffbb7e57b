"""Checkpoints: the chain hash at a position, to anchor elsewhere and check history against.

The hash chain makes every batch's hash depend on everything before it, so the chain hash at a
position is a fingerprint of the whole history up to there. Export it (a short text token),
keep it somewhere the journal's writer cannot change (a ticket, a log, another machine), and
later ``verify_checkpoint`` proves that history up to that position is unchanged, even against
someone who rewrote every file and recomputed an unkeyed chain, and even when the journal has
grown since. It also catches whole batches cut off the end, which no file-level check can.

Both functions read the directory without changing a file or holding the journal's lock. A
torn tail at the end is not durable and is not part of any checkpoint; nor is a torn segment
creation (a last segment file without its whole header, left by a roll that a crash
interrupted or that a live journal is making).

Nor is a batch a live journal is writing. Its bytes can be complete in the page cache before
its fdatasync returned, and a power cut then may lose them: a checkpoint that included them
would later call the untouched journal cut (and a listing, ``read_journal_files``, would show
events that never were; it leaves the batch out alike). Nothing in the files tells such a batch
from a durable one, but a journal writes one batch at a time, so only the last batch of the
last segment can be in flight. ``export_checkpoint`` therefore asks, once it has read the
segments, whether a journal holds the directory's lock (a shared lock requested without
waiting, and given back at once; a journal opening at that instant sees that only a shared lock
holds it and asks again), and if one does, it leaves that last batch out: the checkpoint is
then at the end of the batch before it. Unless bytes follow that batch (a torn tail, a last
segment file without its whole header): a journal begins to write the next batch, or to
create the next segment, only once the last batch's fdatasync returned, so the batch in flight
is then the one those bytes begin, which no tool hands out anyway. A journal opened with
``durable=False`` never syncs, so checkpoints of it promise nothing against a power cut.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import ParamSpec, TypeVar

from ._codec import (
    COMMIT_FRAME_BYTES,
    KIND_COMMIT,
    ZERO_HASH,
    RecordError,
    decode_commit,
    read_frame,
)
from ._codec import SEGMENT_HEADER_BYTES as _HEADER_BYTES
from ._exceptions import JournalCorrupted, JournalNotFound
from ._file_open import journal_is_open, refuse_leftovers, refuse_unrolled_segment
from ._history import JournalScan, ScannedSegment, journal_segments, read_segment_file
from ._left_out import LeftOut, last_batch_in_flight, left_out_at_the_end
from ._recovery import scan_segment
from ._validation import check_key

_TOKEN = re.compile(r"eventfold-checkpoint/1/(\d+)/([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain hash of a journal's history up to ``position`` (0: the empty journal).

    ``str(checkpoint)`` is a one-line token, ``Checkpoint.parse`` reads it back::

        checkpoint = export_checkpoint("data/journal")
        print(checkpoint)   # eventfold-checkpoint/1/1042/6f1c...
        ...
        verify_checkpoint("data/journal", Checkpoint.parse(token))
    """

    position: int
    chain_hash: str
    left_out: tuple[LeftOut, ...] = field(default=(), compare=False, repr=False)
    """What ``export_checkpoint`` left out at the end of the journal (the last batch of a
    journal that is open, a torn tail...): not part of the token, nor of equality."""

    def __str__(self) -> str:
        return f"eventfold-checkpoint/1/{self.position}/{self.chain_hash}"

    @classmethod
    def parse(cls, token: str) -> Checkpoint:
        """Read a token made by ``str(checkpoint)``; ValueError for anything else."""
        match = _TOKEN.fullmatch(token.strip())
        if match is None:
            raise ValueError(
                f"{token[:80]!r} is not a checkpoint token; expected "
                f"'eventfold-checkpoint/1/<position>/<64 hex digits>' as printed by "
                f"'eventfold checkpoint'"
            )
        return cls(int(match.group(1)), match.group(2))


def _no_history(directory: str) -> JournalNotFound:
    return JournalNotFound(
        f"{directory} holds no journal yet (no segment files, nothing else a journal "
        f"leaves), so there is no history to checkpoint; a journal is created there when "
        f"it is first opened"
    )


def _history_gone(directory: str, checkpoint: Checkpoint) -> JournalNotFound:
    """For a checkpoint of history (position 1 on) checked against a directory without a
    journal: that history is gone from there, and opening would start a new one over it."""
    if checkpoint.position == 0:
        return _no_history(directory)
    return JournalNotFound(
        f"{directory} holds no journal (no segment files, nothing else a journal leaves), yet "
        f"the checkpoint is of history up to position {checkpoint.position}: if this is the "
        f"journal's directory, all of that history is gone. Restore it from a replica or "
        f"backup, and do not open a journal here meanwhile (that would start a new, empty "
        f"one); if it is not, give the journal's directory"
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _found_by(during: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Raise ``JournalCorrupted`` with the advice of what found it (``during``), not the
    advice of opening: only ``verify_checkpoint`` compares history with a checkpoint. Advice
    of the refusal's own (what to do with a directory where the lock file belongs, say) is
    kept: the usual advice, to restore the file from a backup, would be wrong there."""

    def found_by(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def checked(*arguments: _P.args, **keywords: _P.kwargs) -> _R:
            try:
                return function(*arguments, **keywords)
            except JournalCorrupted as error:
                if error.during == during:
                    raise
                raise JournalCorrupted(
                    error.path, error.offset, error.reason, during=during, advice=error.advice
                ) from None

        return checked

    return found_by


@_found_by("export")
def export_checkpoint(
    path: str | os.PathLike[str], *, key: bytes | bytearray | memoryview | None = None
) -> Checkpoint:
    """The checkpoint of the journal's durable history: its last position and chain hash.

    The journal is checked on the way as opening checks it (checksums, sequence, chain, the end
    a clean close recorded, snapshots against the events): what opening refuses raises
    ``JournalCorrupted`` rather than yield a checkpoint of damaged or cut history, and a keyed
    journal given no key raises ``JournalKeyMissing``. Of a journal that is open, the last
    batch is left out: it may still be waiting for its fdatasync (see the module's docstring).
    What was left out at the end (that batch, a torn tail, a torn segment creation) is in the
    checkpoint's ``left_out``.
    """
    journal = JournalScan(path, key)
    last: ScannedSegment | None = None
    for scanned in journal.segments():
        last = scanned
    journal.check_snapshots()
    if last is None:
        raise _no_history(journal.directory)
    # Asked after every segment was read: a journal that holds the lock now may have had its
    # last batch in flight when it was read (see the module's docstring).
    is_open = journal_is_open(journal.directory)
    left_out = left_out_at_the_end(last.scan, journal.dropped, is_open)
    if is_open and last_batch_in_flight(last.scan, journal.dropped):
        return replace(_before_the_last_batch(last), left_out=left_out)
    scan = last.scan
    return Checkpoint(scan.last_position, scan.final_hash.hex(), left_out)


def _before_the_last_batch(last: ScannedSegment) -> Checkpoint:
    """The checkpoint at the end of the batch before the last one in the last segment, which
    has one (``last_batch_in_flight``).

    A segment's batches are written one at a time, and a roll creates the next segment only
    after the last batch of this one was synced: so the last segment's last batch, if it has
    one, is the only one that can be in flight, and everything before it is durable.
    """
    scan = last.scan
    if scan.batches == 1:
        return Checkpoint(scan.first_position - 1, last.chain_before.hex())
    offset = scan.commits[-2]
    with open(scan.path, "rb") as file:  # Bytes the scan checked; a journal never rewrites them.
        raw = os.pread(file.fileno(), COMMIT_FRAME_BYTES, offset)
    try:
        start, end = read_frame(raw, 0)
        commit = decode_commit(raw[start:end])
    except RecordError as error:
        raise JournalCorrupted(scan.path, offset, f"{error} (it changed while read)") from None
    return Checkpoint(commit.last_position, commit.chain_hash.hex())


def _commit_end(data: bytes, path: str, position: int) -> int | None:
    """The end offset of the commit record whose batch ends at ``position``, or None.

    Walks frames only; ``scan_segment`` checks the prefix afterwards.
    """
    offset = _HEADER_BYTES
    while offset < len(data):
        try:
            start, end = read_frame(data, offset)
        except RecordError as error:
            raise JournalCorrupted(path, offset, str(error)) from None
        if data[start] == KIND_COMMIT:
            try:
                last = decode_commit(data[start:end]).last_position
            except RecordError as error:
                raise JournalCorrupted(path, offset, str(error)) from None
            if last == position:
                return end
            if last > position:
                return None
        offset = end
    return None


@_found_by("checkpoint")
def verify_checkpoint(
    path: str | os.PathLike[str],
    checkpoint: Checkpoint,
    *,
    key: bytes | bytearray | memoryview | None = None,
) -> None:
    """Check that the journal's history up to ``checkpoint.position`` is the one it fingerprints.

    Returns quietly when it is. Raises ``JournalCorrupted`` naming the file and byte offset
    when the history was changed (the chain hash there differs), when the checkpoint's
    position is no longer the end of a commit batch, when the journal now ends before it, or
    when a record before it is damaged. Events after the checkpoint are not examined, unless
    the last segment file is too short for its header: whether a roll made it (as opening
    asks) depends on the journal's head, so then the whole journal is checked as
    ``export_checkpoint`` checks it. Raises ``JournalKeyMissing`` for a keyed journal given
    no key, and ``JournalNotFound`` for a directory without a journal (for a checkpoint of
    history, saying that the history is gone if it is the journal's directory).
    """
    directory = os.fspath(path)
    key = check_key(key)
    segments, dropped = journal_segments(directory)
    if not segments:
        refuse_leftovers(directory)
        if dropped is not None:
            refuse_unrolled_segment(dropped, 0)
        raise _history_gone(directory, checkpoint)
    if dropped is not None:
        # Opening removes a torn last segment creation only when a roll made it, named for the
        # position after the head; finding the head takes scanning the journal to its end.
        export_checkpoint(directory, key=key)
    chain = ZERO_HASH
    versions: dict[bytes, int] = {}
    position = 0
    expected = checkpoint.chain_hash
    if checkpoint.position == 0:
        if expected != ZERO_HASH.hex():
            raise JournalCorrupted(directory, 0, "a checkpoint at position 0 has the zero hash")
        return
    for number, (first, segment_path) in enumerate(segments):
        if first != position + 1:
            raise JournalCorrupted(
                segment_path, 0, f"segment starts at position {first}, expected {position + 1}"
            )
        data = read_segment_file(segment_path)
        is_last = number == len(segments) - 1
        next_first = None if is_last else segments[number + 1][0]
        if next_first is not None and next_first <= checkpoint.position + 1:
            # The checkpoint is at or beyond the end of this segment: check it whole.
            scan = scan_segment(
                data,
                segment_path,
                first_position=first,
                previous_hash=chain,
                key=key,
                versions=versions,
                is_last=False,
            )
            chain, position = scan.final_hash, scan.last_position
            if position == checkpoint.position:
                _compare(
                    chain, expected, segment_path, scan.durable_end - COMMIT_FRAME_BYTES, position
                )
                return
            continue
        end = _commit_end(data, segment_path, checkpoint.position)
        if end is None:
            scan = scan_segment(
                data,
                segment_path,
                first_position=first,
                previous_hash=chain,
                key=key,
                versions=versions,
                is_last=is_last,
            )
            if scan.last_position < checkpoint.position:
                raise JournalCorrupted(
                    segment_path,
                    scan.durable_end,
                    f"the journal ends at position {scan.last_position}, before the "
                    f"checkpoint at position {checkpoint.position}: history was cut",
                )
            raise JournalCorrupted(
                segment_path,
                0,
                f"no commit batch ends at the checkpoint's position {checkpoint.position}: "
                f"history up to it was rewritten",
            )
        scan = scan_segment(
            data[:end],
            segment_path,
            first_position=first,
            previous_hash=chain,
            key=key,
            versions=versions,
            is_last=True,
        )
        _compare(
            scan.final_hash, expected, segment_path, end - COMMIT_FRAME_BYTES, checkpoint.position
        )
        return
    # Invariant: the last segment either returns or raises above.
    raise AssertionError("verify_checkpoint walked past the last segment")  # pragma: no cover


def _compare(chain: bytes, expected: str, path: str, offset: int, position: int) -> None:
    if chain.hex() != expected:
        raise JournalCorrupted(
            path,
            offset,
            f"the chain hash at position {position} is {chain.hex()[:16]}..., the checkpoint "
            f"says {expected[:16]}...: history up to the checkpoint was changed",
        )
