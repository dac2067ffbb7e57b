"""Every public exception of eventfold's journals.

Hierarchy::

    EventfoldError                 base of everything eventfold raises on purpose
    └── JournalError               something about a journal
        ├── ConcurrencyError       expected_version did not match; nothing was written
        ├── EventEncodingError     data or metadata cannot be encoded; nothing was written
        │                          (also a ValueError)
        ├── JournalClosed          closed by you: the journal was closed before or during the call
        ├── JournalFailed          broken: a write, an fsync or the committer failed; fail-stop
        │   └── JournalFailedAfterSync  ... after this append was synced: durable, do not retry it
        ├── SnapshotCompactionFailed  a compaction failed before it changed anything; go on
        ├── JournalLocked          another opener (in this or another process) has the directory
        ├── JournalOwnedByAnotherUser  a maintenance tool that writes runs as another user
        ├── JournalOpenedInAnotherTask  closed in a task other than the one that opened it
        │                          (also a RuntimeError, as the task group's error was)
        ├── JournalKeyMissing      the journal is keyed and no key was given; not damage
        ├── JournalKeptChanging    a read-only tool never saw the files hold still; read again
        ├── InvalidStreamId        not a stream id (also a ValueError, as it always was)
        ├── NotAJournalDirectory   the journal's path is not a directory
        ├── JournalNotFound        no journal there to read (also a FileNotFoundError)
        └── JournalCorrupted       the files on disk are not what this journal wrote

"Closed by you" and "broken by the outside" are distinct on purpose: the first is a bug or a
shutdown race in the caller, the second is an operational incident that needs a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyio import TaskInfo


class EventfoldError(Exception):
    """Base class of every error eventfold raises on purpose."""


class JournalError(EventfoldError):
    """Base class of the journal errors."""


class ConcurrencyError(JournalError):
    """The stream's version is not the one the caller expected; nothing was written."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, not at the expected version "
            f"{expected_version}; nothing was written. Reload the stream and decide again."
        )


class EventEncodingError(JournalError, ValueError):
    """An event's data or metadata cannot be encoded as JSON; nothing of that append was written."""


class JournalClosed(JournalError):
    """The journal was closed (by its owner) before or while the call ran."""


NOT_WRITABLE = (
    "the journal is closed (or was never opened with 'async with'); no more appends are "
    "accepted: open it with 'async with journal:' around its use"
)
NOT_OPEN = (
    "the journal is closed (or not opened); reads need it open: open it with "
    "'async with journal:' around its use, and close it only after the last call"
)
CLOSED_DURING_READ = (
    "the journal was closed during the read, so the rest of it cannot be read: close the "
    "journal only once the tasks that read it have ended (or read again after reopening it)"
)


class JournalFailed(JournalError):
    """A write or fsync failed, or the committer stopped on an unexpected error (a bug, or
    memory running out). The journal stopped accepting appends (fail-stop).

    No append is acknowledged after the failure. Reopen the journal to recover the durable
    prefix once the cause (a full disk, a failing device) has been dealt with.
    """


class JournalFailedAfterSync(JournalFailed):
    """The journal failed after this append's batch was written and its fsync returned, but
    before the batch was published: the append is durable, not acknowledged.

    Reopening the journal finds the append, whole, at the version and position it was given;
    until then this journal does not show it. Do not append it again. Like every
    ``JournalFailed``, the journal accepts no more appends. A journal opened with
    ``durable=False`` makes no fsync: its batch was only written, and the message says so (a
    crash of the machine may still lose it).
    """


class SnapshotCompactionFailed(JournalError):
    """Compacting the snapshot file failed before the new file replaced the old one (a full
    disk, a failed write or sync of the new file). Nothing the journal uses changed: it goes on
    with the old file, and appends and snapshots work as before. The ``OSError`` is the cause.

    Not ``JournalFailed``: nothing acknowledged depends on the new file until it is renamed
    over the old one, and a sync failure is reported per file, so the old file's state is not
    in doubt. A failed rename (or the directory sync after it) is ``JournalFailed``.
    """


class JournalLocked(JournalError):
    """Another opener holds the journal's lock: one journal directory has one writer."""


class JournalOwnedByAnotherUser(JournalError):
    """A tool that writes a journal no process has open (``compact_journal_snapshots``,
    ``eventfold compact``) runs as another user than the one who owns the journal's segment
    files (the application's user, who writes them).

    The files it writes (the new snapshot file, the clean-close record) would belong to the
    user it runs as, readable by that user alone (the journal's files are made ``0600``), so
    the application, running as the owner, could no longer open its journal. Nothing was
    changed: run the tool as the owner (``sudo -u OWNER eventfold compact PATH``).
    """


class JournalOpenedInAnotherTask(JournalError, RuntimeError):
    """``aclose`` (or leaving ``async with``) was called in a task other than the one that
    opened the journal. Nothing was done: the journal is still open, appends still work, and
    the task that opened it can close it as usual (what was acknowledged is kept, the lock is
    released then).

    A journal's committer runs in a task group, and only the task that entered a task group
    may leave it. Open and close the journal in one task that lives as long as the journal
    is used. A ``RuntimeError`` as well, as the error from the task group was before.

    A close while the opening is still under way (``opening``) is refused the same way: the
    opening goes on, and the task that opens the journal closes it.
    """

    def __init__(
        self, journal: str, opened_in: TaskInfo, closing_in: TaskInfo, *, opening: bool = False
    ) -> None:
        self.opened_in = opened_in
        self.closing_in = closing_in
        state = (
            "is being opened in" if opening else "was opened in",
            "the opening goes on, and that task must close the journal"
            if opening
            else "the journal is still open",
        )
        super().__init__(
            f"this {journal} {state[0]} task {opened_in.name!r} (id {opened_in.id}) and "
            f"cannot be closed in another task, {closing_in.name!r} (id {closing_in.id}): its "
            f"committer runs in a task group, which only the task that entered it can leave. "
            f"Nothing was done; {state[1]}. Open and close it in the same task, "
            f"one that lives as long as the journal is used and does not end before closing "
            f"it: 'async with journal:' around the "
            f"service's whole life (a web framework's lifespan context manager does this), "
            f"not an open in a startup hook and a close in a shutdown hook run by other tasks"
        )


class JournalKeyMissing(JournalError):
    """The journal was written with a secret key (its hash chain is keyed), and no key was
    given. Nothing says the journal is damaged: pass the key it was written with.

    Only a missing key is this error. A key other than the journal's, or a key given for a
    journal written without one, is ``JournalCorrupted``: nothing in the files tells it from a
    chain rewritten by someone without the key, which is what the key is there to expose.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        super().__init__(
            f"the journal in {directory} is keyed (its hash chain was written with a secret "
            f"key) and no key was given: pass the key it was written with (FileJournal(key=...); "
            f"on the command line, --key-file FILE)"
        )


class JournalKeptChanging(JournalError):
    """A read-only tool found the journal opened or closed during every one of its scans, so
    its files never showed one state to check. Nothing is wrong with the journal: read it
    again when it stays open, or closed, for a moment."""


class InvalidStreamId(JournalError, ValueError):
    """A stream id that is not a non-empty str of at most 255 UTF-8 bytes; nothing was done.

    A ``ValueError`` as well, so code that caught ``ValueError`` for it still does.
    """


class NotAJournalDirectory(JournalError):
    """The path given for a journal exists but is not a directory."""


class JournalNotFound(JournalError, FileNotFoundError):
    """There is no journal to read at the path: it does not exist, or it is a directory that
    holds no journal yet (nothing a journal leaves). Raised by the tools that only read a
    journal, such as ``export_checkpoint``; opening a ``FileJournal`` there creates one.

    A ``FileNotFoundError`` as well, as a missing directory always was.
    """


_ADVICE = {
    "open": "The journal refuses to open rather than skip data; restore the file from a "
    "replica or backup, or inspect it with 'eventfold verify'.",
    "read": "The read stops here rather than skip data; the journal stays open. Restore the "
    "file from a replica or backup, or inspect it with 'eventfold verify'.",
    "export": "No checkpoint is made of history that opening refuses; restore the file from a "
    "replica or backup, or inspect the journal with 'eventfold verify'.",
    "checkpoint": "History up to the checkpoint cannot be shown unchanged; compare with a "
    "replica or backup, or inspect the journal with 'eventfold verify'.",
}


_INDEX_FILE_ADVICE = {
    "open": "The journal refuses to open rather than guess. An index file is only a cache of "
    "its segment: removing it loses nothing, and opening rebuilds it.",
    "read": "The read stops here rather than skip data; the journal stays open. An index file "
    "is only a cache of its segment: removing it loses nothing, and reopening the journal "
    "rebuilds it.",
    "export": "No checkpoint is made of history that opening refuses. An index file is only a "
    "cache of its segment: removing it loses nothing, and opening rebuilds it.",
    "checkpoint": _ADVICE["checkpoint"],
}


class JournalCorrupted(JournalError):
    """The journal's files hold bytes this journal did not write (or that changed since).

    ``path`` and ``offset`` name the first bad byte found; ``during`` says what found it:
    ``"open"`` (opening refuses; also the read-only tools that check as opening does),
    ``"read"`` (a read of an open journal), ``"export"`` (``export_checkpoint``) or
    ``"checkpoint"`` (``verify_checkpoint``, comparing history with a checkpoint).
    When ``path`` is an index file (``*.idx``), the advice is to remove it, not to restore it,
    unless ``advice`` says what to do instead. ``advice`` keeps what was given ("" when the
    message carries the usual advice of ``during``), so that a tool which re-raises the
    refusal as its own keeps advice that only the refusal knows.
    """

    def __init__(
        self, path: str, offset: int, reason: str, *, during: str = "open", advice: str = ""
    ) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        self.during = during
        self.advice = advice
        advice = advice or (_INDEX_FILE_ADVICE if path.endswith(".idx") else _ADVICE)[during]
        super().__init__(f"{path} at byte offset {offset}: {reason}. {advice}")
