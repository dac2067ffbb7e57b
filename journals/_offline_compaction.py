"""Compacting the snapshot file of a journal that no process has open (``eventfold compact``).

The journal is opened as an application opens it: the lock is taken (a journal open elsewhere
is refused with ``JournalLocked``), everything opening checks is checked (what it refuses is
refused, before anything changes), and the close is clean. Only the compaction itself is what
an application's open does not do: it runs whatever ``worth_compacting`` says.
"""

from __future__ import annotations

import os

from ._exceptions import JournalNotFound
from ._file_journal import FileJournal
from ._file_open import list_segments, refuse_leftovers
from ._history import check_journal_directory
from ._snapshot_compaction import SnapshotCompaction


async def compact_journal_snapshots(
    path: str | os.PathLike[str], *, key: bytes | bytearray | memoryview | None = None
) -> SnapshotCompaction:
    """Open the journal at ``path``, compact its snapshot file, close it cleanly; answer the
    snapshots and bytes before (as the file was found) and after.

    Unlike opening a ``FileJournal``, never creates a journal: a path that does not exist or
    holds no journal yet raises ``JournalNotFound``, a file ``NotAJournalDirectory``. A
    journal that another ``FileJournal`` holds raises ``JournalLocked``; what opening refuses
    (``JournalCorrupted``, ``JournalKeyMissing``) is refused, and nothing is changed. Raises
    ``SnapshotCompactionFailed`` when the compaction fails before its rename (the journal is
    closed unchanged) and ``JournalFailed`` when the rename fails, as
    ``FileJournal.compact_snapshots`` does::

        compaction = await compact_journal_snapshots("data/journal")
        print(compaction.bytes_before, "->", compaction.bytes_after)
    """
    directory = os.fspath(path)
    journal = FileJournal(directory, key=key)  # A key of the wrong length: ValueError first.
    check_journal_directory(directory)
    if not list_segments(directory):
        refuse_leftovers(directory)  # Lost segments are refused as opening refuses them.
        raise JournalNotFound(
            f"{directory} holds no journal yet (no segment files, nothing else a journal "
            f"leaves), so it has no snapshots to compact; nothing was created there"
        )
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
