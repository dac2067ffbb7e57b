"""eventfold's journals: append-only event logs behind one async contract.

``MemoryJournal`` keeps everything in memory; ``FileJournal`` keeps segment files on disk with
group commit, checksums, a hash chain and recovery. Both pass the same conformance suite.
"""

from ._checkpoint import Checkpoint as Checkpoint
from ._checkpoint import export_checkpoint as export_checkpoint
from ._checkpoint import verify_checkpoint as verify_checkpoint
from ._encoding import decode_data as decode_data
from ._encoding import encode_data as encode_data
from ._encoding import encode_event as encode_event
from ._exceptions import ConcurrencyError as ConcurrencyError
from ._exceptions import EventEncodingError as EventEncodingError
from ._exceptions import EventfoldError as EventfoldError
from ._exceptions import InvalidStreamId as InvalidStreamId
from ._exceptions import JournalClosed as JournalClosed
from ._exceptions import JournalCorrupted as JournalCorrupted
from ._exceptions import JournalError as JournalError
from ._exceptions import JournalFailed as JournalFailed
from ._exceptions import JournalFailedAfterSync as JournalFailedAfterSync
from ._exceptions import JournalKeptChanging as JournalKeptChanging
from ._exceptions import JournalKeyMissing as JournalKeyMissing
from ._exceptions import JournalLocked as JournalLocked
from ._exceptions import JournalNotFound as JournalNotFound
from ._exceptions import JournalOpenedInAnotherTask as JournalOpenedInAnotherTask
from ._exceptions import JournalOwnedByAnotherUser as JournalOwnedByAnotherUser
from ._exceptions import NotAJournalDirectory as NotAJournalDirectory
from ._exceptions import SnapshotCompactionFailed as SnapshotCompactionFailed
from ._file_journal import FileJournal as FileJournal
from ._file_open import RecoveryReport as RecoveryReport
from ._journal import AppendOutcome as AppendOutcome
from ._journal import Journal as Journal
from ._journal import QueuedAppend as QueuedAppend
from ._journal import StartedAppend as StartedAppend
from ._left_out import LeftOut as LeftOut
from ._listing import JournalListing as JournalListing
from ._listing import read_journal_files as read_journal_files
from ._memory import MemoryJournal as MemoryJournal
from ._offline_compaction import compact_journal_snapshots as compact_journal_snapshots
from ._recovery import TornTail as TornTail
from ._snapshot_compaction import SnapshotCompaction as SnapshotCompaction
from ._types import EMPTY_METADATA as EMPTY_METADATA
from ._types import AppendResult as AppendResult
from ._types import JournalStatistics as JournalStatistics
from ._types import NewEvent as NewEvent
from ._types import RecordedEvent as RecordedEvent
from ._types import Snapshot as Snapshot
from ._types import StreamChunk as StreamChunk
from ._validation import STREAM_ID_BYTES_MAX as STREAM_ID_BYTES_MAX
from ._verify import JournalProblem as JournalProblem
from ._verify import VerifyReport as VerifyReport
from ._verify import verify_journal as verify_journal

__all__ = [
    "EMPTY_METADATA",
    "STREAM_ID_BYTES_MAX",
    "AppendOutcome",
    "AppendResult",
    "Checkpoint",
    "ConcurrencyError",
    "EventEncodingError",
    "EventfoldError",
    "FileJournal",
    "InvalidStreamId",
    "Journal",
    "JournalClosed",
    "JournalCorrupted",
    "JournalError",
    "JournalFailed",
    "JournalFailedAfterSync",
    "JournalKeptChanging",
    "JournalKeyMissing",
    "JournalListing",
    "JournalLocked",
    "JournalNotFound",
    "JournalOpenedInAnotherTask",
    "JournalOwnedByAnotherUser",
    "JournalProblem",
    "JournalStatistics",
    "LeftOut",
    "MemoryJournal",
    "NewEvent",
    "NotAJournalDirectory",
    "QueuedAppend",
    "RecordedEvent",
    "RecoveryReport",
    "Snapshot",
    "SnapshotCompaction",
    "SnapshotCompactionFailed",
    "StartedAppend",
    "StreamChunk",
    "TornTail",
    "VerifyReport",
    "compact_journal_snapshots",
    "decode_data",
    "encode_data",
    "encode_event",
    "export_checkpoint",
    "read_journal_files",
    "verify_checkpoint",
    "verify_journal",
]
