"""Compacting the snapshot file of a journal that no process has open (``eventfold compact``).

The journal is opened as an application opens it: the lock is taken (a journal open elsewhere
is refused with ``JournalLocked``), everything opening checks is checked (what it refuses is
refused, before anything changes), and the close is clean. Only the compaction itself is what
an application's open does not do: it runs whatever ``worth_compacting`` says.

Unlike an application, the command is often run by hand, and as another user (``sudo``): it
refuses to run as any user but the owner of the journal's segments (the application's user),
since what it writes would be that user's files, which the application could not read.
"""

from __future__ import annotations

import os
import pwd

from ._exceptions import JournalNotFound, JournalOwnedByAnotherUser
from ._file_journal import FileJournal
from ._file_open import refuse_leftovers, refuse_unrolled_segment
from ._history import journal_segments
from ._snapshot_compaction import SnapshotCompaction


async def compact_journal_snapshots(
    path: str | os.PathLike[str], *, key: bytes | bytearray | memoryview | None = None
) -> SnapshotCompaction:
    """Open the journal at ``path``, compact its snapshot file, close it cleanly; answer the
    snapshots and bytes before (as the file was found) and after.

    Unlike opening a ``FileJournal``, never creates a journal: a path that does not exist or
    holds no journal yet raises ``JournalNotFound``, a file ``NotAJournalDirectory``. A
    journal that another ``FileJournal`` holds raises ``JournalLocked``, and one whose
    files belong to another user than the one this runs as raises
    ``JournalOwnedByAnotherUser`` (the application could not read what it would write); what
    opening refuses (``JournalCorrupted``, ``JournalKeyMissing``) is refused, and nothing is
    changed. Raises
    ``SnapshotCompactionFailed`` when the compaction fails before its rename (the journal is
    closed unchanged) and ``JournalFailed`` when the rename fails, as
    ``FileJournal.compact_snapshots`` does::

        compaction = await compact_journal_snapshots("data/journal")
        print(compaction.bytes_before, "->", compaction.bytes_after)
    """
    directory = os.fspath(path)
    journal = FileJournal(directory, key=key)  # A key of the wrong length: ValueError first.
    segments, dropped = journal_segments(directory)
    if not segments:
        refuse_leftovers(directory)  # Lost segments are refused as opening refuses them.
        # Only a segment file cut short as it was created, which opening would remove: as
        # for 'eventfold verify' and checkpoints, there is no journal yet.
        if dropped is not None:
            refuse_unrolled_segment(dropped, 0)
        found = (
            "no segment files, nothing else a journal leaves"
            if dropped is None
            else f"only {dropped.path}, a segment file cut short as it was created"
        )
        raise JournalNotFound(
            f"{directory} holds no journal yet ({found}), so it has no snapshots to compact; "
            f"nothing was created there"
        )
    _refuse_another_owner(directory, segments[0][1])
    async with journal:
        at_open = journal.recovery_report.snapshot_compaction
        compaction = await journal.compact_snapshots()
    if at_open is None:
        return compaction
    # Opening compacted already (it was worth it): before is what opening found.
    return SnapshotCompaction(
        at_open.snapshots_before,
        compaction.snapshots_after,
        at_open.bytes_before,
        compaction.bytes_after,
    )


def _refuse_another_owner(directory: str, segment: str) -> None:
    """Refuse to write the journal in ``directory`` as another user than its owner: the one
    who owns its ``segment`` files, which only the application writes (the directory may have
    been made by someone else, a deployment run as root, say)."""
    owner = os.stat(segment).st_uid
    user = os.geteuid()
    if owner == user:
        return
    raise JournalOwnedByAnotherUser(
        f"the journal in {directory} belongs to {_user(owner)}, and this runs as "
        f"{_user(user)}: the files compacting writes (the new snapshot file, the clean-close "
        f"record) would belong to {_user(user)}, readable by it alone, and the journal's owner "
        f"could no longer open the journal. Nothing was changed; compact as the owner "
        f"(sudo -u {_sudo_name(owner)} eventfold compact {directory})"
    )


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _sudo_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"'#{uid}'"
