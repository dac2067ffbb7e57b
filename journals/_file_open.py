"""Opening a FileJournal's directory: create it (syncing the parent of each directory made),
lock, recover every segment and the snapshot file, build the index, and compact the snapshot
file when that is worth it.

Runs in a worker thread (it reads whole files). The checks themselves are the pure functions of
``_recovery`` and ``_index``; this module only feeds them bytes and applies their verdicts.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import time
from dataclasses import dataclass

from ._clean_close import (
    CLEAN_CLOSE_FILE_NAME,
    read_clean_close,
    refuse_unclean_end,
    refuse_unclean_snapshots,
    remove_clean_close,
)
from ._codec import SEGMENT_HEADER_BYTES, ZERO_HASH, RecordError, decode_segment_header
from ._codec import index_file_name as _index_name
from ._codec import segment_file_name as _segment_name
from ._exceptions import (
    JournalCorrupted,
    JournalLocked,
    NotAJournalDirectory,
    SnapshotCompactionFailed,
)
from ._file_snapshots import SNAPSHOT_FILE_NAME, SnapshotStore
from ._file_writer import SegmentWriter, create_segment
from ._fileio import FileIO, read_segment_file
from ._fileio import read_file as _read_file
from ._files_in_place import (
    LOCK_FILE_NAME,
    list_segments,
    refuse_lock_file_in_place,
    refuse_non_file_in_place,
    refuse_non_files_in_place,
)
from ._index import JournalIndex, SegmentIndex, encode_index_file
from ._index_trust import load_index_file
from ._recovery import SegmentScan, TornTail, scan_segment
from ._segment_files import SegmentFiles
from ._snapshot_compaction import TEMPORARY_SUFFIX, SnapshotCompaction, remove_leftover
from ._snapshot_io import log_compaction

logger = logging.getLogger("journals.file")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the journal found and did.

    ``torn_tails`` lists every cut (file, offset, bytes cut, why); ``rebuilt_indexes`` the
    sealed segments whose index file was missing or invalid and was rebuilt by a scan;
    ``snapshot_compaction`` what compacting the snapshot file did, when opening compacted it
    (see ``FileJournal.compact_snapshots``).
    """

    segments: int
    events: int
    streams: int
    torn_tails: tuple[TornTail, ...]
    rebuilt_indexes: tuple[str, ...]
    elapsed_s: float
    snapshot_compaction: SnapshotCompaction | None = None


@dataclass(slots=True)
class OpenedJournal:
    lock_fd: int
    index: JournalIndex
    segment_files: SegmentFiles
    writer: SegmentWriter
    active_streams: set[str]
    snapshots: SnapshotStore
    report: RecoveryReport


LOCK_ATTEMPTS = 20
"""Requests for the directory's lock while only ``journal_is_open`` holds it, before opening
gives up (``LOCK_RETRY_S`` apart): that hold lasts microseconds, unless its process stalls."""
LOCK_RETRY_S = 0.001

_held_locks: set[tuple[int, int]] = set()
"""The lock files (device, inode) that journals of this process hold: the exact answer to
whether a refused opener conflicts with this process, which the id in the lock file is not
(it stays there after a close)."""


def take_lock(file_io: FileIO, directory: str) -> int:
    """Lock the directory for this opener; the lock file then holds this process's id.

    The id is for a person looking for the holder; nothing reads it: the lock is the ``flock``,
    and this process's own locks are known from ``_held_locks``. A request
    that finds the lock held asks for a shared lock: granted, it means no journal holds the
    directory, only ``journal_is_open`` for a moment (it holds a shared lock), so the request
    is made again, up to ``LOCK_ATTEMPTS`` times; refused, a journal holds it.
    """
    refuse_lock_file_in_place(directory)
    fd = file_io.open(os.path.join(directory, LOCK_FILE_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for _attempt in range(LOCK_ATTEMPTS):
            try:
                file_io.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            try:
                file_io.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _held_by_a_journal(fd, directory) from None
            file_io.flock(fd, fcntl.LOCK_UN)
            time.sleep(LOCK_RETRY_S)
        else:
            raise JournalLocked(
                f"the journal in {directory} stayed locked by readers that only ask whether it "
                f"is open ('eventfold checkpoint' and 'eventfold inspect' do) through "
                f"{LOCK_ATTEMPTS} attempts to open it; no journal holds it. Open it again."
            )
        stat = os.fstat(fd)
    except BaseException:
        file_io.close(fd)
        raise
    _held_locks.add((stat.st_dev, stat.st_ino))
    # Plain os calls, not file_io: the id is a courtesy, not journal data.
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _held_by_a_journal(fd: int, directory: str) -> JournalLocked:
    stat = os.fstat(fd)
    if (stat.st_dev, stat.st_ino) in _held_locks:
        return JournalLocked(
            f"the journal in {directory} is already open in this process (another "
            f"FileJournal on the same directory); one journal directory has one writer. "
            f"Close that one first, or share it."
        )
    return JournalLocked(
        f"the journal in {directory} is open in another process; one journal directory "
        f"has one writer. Close it there first, or use 'eventfold verify' to read it."
    )


def release_lock(file_io: FileIO, fd: int) -> None:
    """Give back the lock ``take_lock`` took (closing its file)."""
    try:
        stat = os.fstat(fd)
        _held_locks.discard((stat.st_dev, stat.st_ino))
    finally:
        file_io.close(fd)


def journal_is_open(directory: str) -> bool:
    """Whether a journal holds the directory's lock (``take_lock``) at this moment.

    Asks for a shared lock without waiting and gives it back at once: a journal that has the
    directory open holds the exclusive lock, so the request fails. A ``FileJournal`` opening
    at that very instant finds the lock taken, sees that only a shared lock holds it, and asks
    again (``take_lock``): the request is released within microseconds. A directory without
    a lock file was never opened.
    """
    try:
        fd = os.open(os.path.join(directory, LOCK_FILE_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # Releases the shared lock, if it was granted.
    return False


def _missing_directories(directory: str) -> list[str]:
    """The directories ``makedirs(directory)`` would create, outermost first."""
    missing: list[str] = []
    path = os.path.abspath(directory)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def open_journal_files(
    directory: str, file_io: FileIO, *, key: bytes | None, durable: bool, snapshot_compaction: bool
) -> OpenedJournal:
    """Lock the directory, recover it, and answer everything the journal needs to run;
    ``snapshot_compaction``: compact the snapshot file if that is worth it."""
    started = time.perf_counter()
    created = _missing_directories(directory)
    try:
        file_io.makedirs(directory, 0o700)
    except FileExistsError:  # A file (not a directory) of that name.
        raise NotAJournalDirectory(
            f"{directory} exists and is not a directory, so it cannot hold a journal; give the "
            f"path of a journal directory (or of a directory to create)"
        ) from None
    if durable:
        # A directory's name lives in its parent: until the parent is synced, a power cut
        # may take the new directory away with every file in it, acknowledged events too.
        for made in created:
            file_io.fsync_directory(os.path.dirname(made))
    lock_fd = take_lock(file_io, directory)
    segment_files = SegmentFiles()
    trusted: list[str] = []
    recover = functools.partial(_recover, directory, file_io, lock_fd, segment_files)
    try:
        try:
            return recover(trusted, key, durable, snapshot_compaction, started)
        except JournalCorrupted:
            if not trusted:
                raise
        # A refusal after index files were trusted could have been caused by one that lies
        # in a way its checks cannot see; only the segments themselves may be blamed, so
        # recover again from the segments alone, rebuilding every index file. Nothing was
        # changed before the refusal (see _recover), so this starts from the same files.
        logger.warning(
            "opening %s failed after %d index files were used; opening again from the "
            "segments alone",
            directory,
            len(trusted),
        )
        segment_files.close()
        return recover(None, key, durable, snapshot_compaction, started)
    except BaseException:
        segment_files.close()
        release_lock(file_io, lock_fd)
        raise


def _recover(
    directory: str,
    file_io: FileIO,
    lock_fd: int,
    segment_files: SegmentFiles,
    trusted: list[str] | None,
    key: bytes | None,
    durable: bool,
    snapshot_compaction: bool,
    started: float,
) -> OpenedJournal:
    """Recover the directory; index files the checks accept are used and added to ``trusted``
    (None: use no index file, scan every segment)."""
    # Invariant: every check that can refuse runs before any file changes, so a refused open
    # leaves the directory as it found it. The changes (removing a torn last segment, cutting
    # torn tails, writing rebuilt index files, creating files) come after them.
    # Opening reads the clean-close record, then removes it and the temporary file a close may
    # have left: a directory in place of either is refused here, before anything changes.
    refuse_non_files_in_place(os.path.join(directory, CLEAN_CLOSE_FILE_NAME))
    clean = read_clean_close(directory)
    segments = list_segments(directory)
    dropped = torn_last_segment(segments)
    if dropped is not None:
        segments.pop()
    removed: list[TornTail] = []  # A torn segment creation removed before the loop.
    created = not segments  # A new journal: no batch a crash left to sync.
    if created:
        refuse_leftovers(directory)
        if dropped is not None:
            refuse_unrolled_segment(dropped, 0)
            _apply_drop(directory, file_io, dropped, durable=durable)
            removed.append(dropped)
            dropped = None
        path = os.path.join(directory, _segment_name(1))
        file_io.close(create_segment(file_io, path, 1, ZERO_HASH, key=key, durable=durable))
        if durable:
            file_io.fsync_directory(directory)
        segments = [(1, path)]
    index = JournalIndex()
    versions: dict[bytes, int] = {}
    rebuilt: list[str] = []
    rebuilt_scans: list[SegmentScan] = []
    tails: list[TornTail] = []
    chain = ZERO_HASH
    expected_first = 1
    last_scan: SegmentScan | None = None
    for number, (first, path) in enumerate(segments):
        check_segment_start(path, first, expected_first)
        is_last = number == len(segments) - 1
        scan = None
        index_file = None
        if not is_last and trusted is not None:
            # Checked before it is read, as what is not a file there may never end a read.
            refuse_non_file_in_place(os.path.join(directory, _index_name(first)))
            scan = load_index_file(directory, path, first, chain, segments, number, key, versions)
            if scan is not None:
                index_file = os.path.join(directory, _index_name(first))
                trusted.append(index_file)
        if scan is None:
            scan = scan_segment(
                read_segment_file(path),
                path,
                first_position=first,
                previous_hash=chain,
                key=key,
                versions=versions,
                is_last=is_last,
            )
            if not is_last:
                # Written once the whole journal checked out, not before.
                rebuilt.append(path)
                rebuilt_scans.append(scan)
        if scan.tail is not None:
            tails.append(scan.tail)  # Cut once the whole journal checked out, not before.
        index.add_segment(
            SegmentIndex(
                path,
                first,
                scan.offsets,
                scan.durable_end,
                scan.final_hash,
                scan.commits,
                index_file,
            )
        )
        for stream, positions in scan.streams.items():
            index.add_stream_positions(stream.decode("utf-8"), positions)
        # The newest segments stay open (SEGMENT_FILES_OPEN_MAX); older ones open on a read.
        segment_files.add(first, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        chain = scan.final_hash
        expected_first = first + scan.event_count
        last_scan = scan
    assert last_scan is not None
    if dropped is not None:
        refuse_unrolled_segment(dropped, expected_first - 1)
    if clean is not None:
        refuse_unclean_end(clean, directory, segments, dropped, last_scan.tail, chain)
    for scan in rebuilt_scans:
        refuse_non_files_in_place(os.path.join(directory, _index_name(scan.first_position)))
    # The last segment's index file is written when the journal rolls past it: a directory
    # there would fail the journal at its first roll, long after this open said it was fine.
    refuse_non_files_in_place(os.path.join(directory, _index_name(segments[-1][0])))
    snapshots, snapshot_tail = SnapshotStore.read(file_io, directory, durable=durable, key=key)
    unused = tuple(snapshots.unused.values())  # Logged once opened (a compaction drops them).
    # Opening removes what a crash during a compaction left; and refuses to remove a directory.
    refuse_non_file_in_place(snapshots.path + TEMPORARY_SUFFIX)
    if clean is not None:
        refuse_unclean_snapshots(clean, snapshots.path, snapshots.size, snapshot_tail)
    snapshots.check_versions(index.streams)
    # Everything checked out: now the changes. The clean-close record goes first: from here
    # on, a crash may tear the end again.
    remove_clean_close(file_io, directory)
    torn = removed
    if dropped is not None:
        _apply_drop(directory, file_io, dropped, durable=durable)
        torn.append(dropped)
    for tail in tails:
        _cut_tail(file_io, tail, durable=durable)
        torn.append(tail)
    for scan in rebuilt_scans:
        _write_index_file(file_io, directory, scan, durable=durable)
    snapshots.make_writable(directory, snapshot_tail)
    active = index.segments[-1]
    after_a_crash = durable and clean is None and not created
    try:
        if after_a_crash:
            # A snapshot whose sync never returned may be kept whole in the page cache: the
            # next clean close would record the file's size with it, and a power cut then
            # leave a shorter file, which the open after it refuses as damage.
            try:
                snapshots.sync_kept()
            except OSError as error:
                raise _sync_failed(error, snapshots.path) from None
        # After the clean-close record is gone: a crash during the compaction leaves either
        # snapshot file, and no record that holds the next open to the old one's size.
        remove_leftover(file_io, snapshots.path)
        compaction = _compact_snapshots(snapshots) if snapshot_compaction else None
        fd = file_io.open(active.path, os.O_RDWR)
        if after_a_crash:
            _sync_the_end_kept(file_io, directory, active.path, fd)
        writer = SegmentWriter(file_io, directory, active, fd, key=key, durable=durable)
    except BaseException:
        snapshots.close()
        raise
    if snapshot_tail is not None:
        torn.append(snapshot_tail)
    for tail in torn:
        logger.warning(
            "journal recovery cut a torn tail: %s at offset %d, %d bytes (%s)",
            tail.path,
            tail.offset,
            tail.bytes_cut,
            tail.reason,
        )
    for records in unused:
        # A compaction keeps no record it does not use: one that ran removed them all.
        logger.warning(
            "%s %s %s that opening does not use, the first at offset %d: %s; their "
            "entities are activated from their events instead; %s",
            snapshots.path,
            "holds" if compaction is None else "held",
            records.counted(),
            records.offset,
            records.reason,
            _UNUSED_KEPT if compaction is None else "the compaction at open removed them",
        )
    report = RecoveryReport(
        len(segments),
        index.head_position,
        len(index.streams),
        tuple(torn),
        tuple(rebuilt),
        time.perf_counter() - started,
        compaction,
    )
    active_streams = {stream.decode("utf-8") for stream in last_scan.streams}
    return OpenedJournal(lock_fd, index, segment_files, writer, active_streams, snapshots, report)


_UNUSED_KEPT = (
    "a compaction of the file removes them (FileJournal.compact_snapshots(), or "
    "'eventfold compact' of the closed journal)"
)


def _compact_snapshots(snapshots: SnapshotStore) -> SnapshotCompaction | None:
    """Compact the snapshot file if the snapshots it would drop are worth a rewrite.

    A failure before the rename is logged and opening goes on with the old file, which is
    whole; a failed rename or directory sync fails the open (which file the name holds is
    not known until the next open reads it; either one is whole).
    """
    try:
        compaction = snapshots.compact(only_if_worth=True)
    except SnapshotCompactionFailed as error:
        logger.warning("%s (the journal opens with it)", error)
        return None
    if compaction is not None:
        log_compaction(snapshots.path, compaction)
    # The journal's statistics count from the end of the opening: none of its other syncs
    # (a cut tail, a new file, the directory) is counted either.
    snapshots.fsyncs = 0
    return compaction


def torn_last_segment(segments: list[tuple[int, str]]) -> TornTail | None:
    """The last segment, if a crash interrupted its creation (no complete header)."""
    if not segments:
        return None
    path = segments[-1][1]
    size = os.path.getsize(path)
    if size > SEGMENT_HEADER_BYTES:
        return None
    try:
        if size == SEGMENT_HEADER_BYTES:
            decode_segment_header(_read_file(path))
            return None
    except RecordError:
        pass
    return TornTail(path, 0, size, "segment file with an incomplete header was removed")


def check_segment_start(path: str, first: int, expected_first: int) -> None:
    """Refuse a segment that does not start where the one before it ended."""
    if first != expected_first:
        raise JournalCorrupted(
            path,
            0,
            f"segment starts at position {first}, expected {expected_first}: a segment is "
            f"missing or misnamed",
        )


def refuse_unrolled_segment(dropped: TornTail, head_position: int) -> None:
    """Refuse a torn last segment file (``torn_last_segment``) that no roll could have created.

    A roll creates the segment named for the position after the head, and only that one; a
    small file by any other name is not a crash's leftover, so it is not removed.
    """
    first = int(os.path.basename(dropped.path)[:20])
    if first != head_position + 1:
        raise JournalCorrupted(
            dropped.path,
            0,
            f"segment file of {dropped.bytes_cut} bytes with an incomplete header, named for "
            f"position {first}, but the journal's events end at position {head_position}: a "
            f"crash while rolling leaves only a segment named for position {head_position + 1}, "
            f"so this file is not one. Move it away if it does not belong to the journal; if "
            f"it does, the segments before it are missing",
        )


def _apply_drop(
    directory: str, file_io: FileIO, dropped: TornTail | None, *, durable: bool
) -> None:
    if dropped is None:
        return
    file_io.remove(dropped.path)
    if durable:
        file_io.fsync_directory(directory)


def refuse_leftovers(directory: str) -> None:
    """Refuse a directory without segments that holds what only a journal's segments leave."""
    leftovers = sorted(
        name
        for name in os.listdir(directory)
        if name.endswith(".idx") or name in (SNAPSHOT_FILE_NAME, CLEAN_CLOSE_FILE_NAME)
    )
    if leftovers:
        raise JournalCorrupted(
            os.path.join(directory, leftovers[0]),
            0,
            f"the directory holds no segment files (*.log) but {', '.join(leftovers[:3])}"
            f"{', ...' if len(leftovers) > 3 else ''}, which only a journal with segments "
            f"leaves: its segments are missing",
            advice="The journal refuses to open rather than start empty over lost history. "
            "Restore the segment files from a replica or backup; keep these files (they show "
            "what is missing), or move them away to start a new journal here.",
        )


def _write_index_file(file_io: FileIO, directory: str, scan: SegmentScan, *, durable: bool) -> None:
    segment = SegmentIndex(
        scan.path,
        scan.first_position,
        scan.offsets,
        scan.durable_end,
        scan.final_hash,
        scan.commits,
    )
    raw = encode_index_file(segment, scan.durable_end, scan.streams)
    path = os.path.join(directory, _index_name(scan.first_position))
    temporary = path + ".tmp"
    fd = file_io.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        file_io.pwrite_all(fd, raw, 0)
        if durable:
            file_io.fsync(fd)
    finally:
        file_io.close(fd)
    file_io.replace(temporary, path)


def _sync_the_end_kept(file_io: FileIO, directory: str, path: str, fd: int) -> None:
    """Sync the last segment (``path``, open at ``fd``) of a journal that was not closed
    cleanly, and its directory, before it takes an append. A crash (or a failed sync, which
    fails the journal) can leave a last batch whose bytes are whole in the page cache but
    whose sync never returned, or a segment a roll created whose name was never synced;
    opening keeps them. The next batch is made durable by a write that syncs only its own
    bytes, and a roll syncs only its new files: without these syncs a power cut could still
    take what was kept away from under an acknowledged batch. A journal closed cleanly synced
    everything it wrote.

    A failed sync raises its ``OSError`` naming the file or directory, which the kernel's
    error for a file descriptor does not."""
    try:
        try:
            file_io.fdatasync(fd)
        except OSError as error:
            raise _sync_failed(error, path) from None
        try:
            file_io.fsync_directory(directory)
        except OSError as error:
            raise _sync_failed(error, directory) from None
    except BaseException:
        file_io.close(fd)
        raise


def _sync_failed(error: OSError, path: str) -> OSError:
    """``error``, of a failed sync at opening, naming ``path`` and saying what to do."""
    if error.filename is None:
        error = OSError(error.errno, error.strerror, path)
    error.add_note(
        "opening syncs what a crash left at the journal's end before it takes an append, and "
        "that sync failed, so the journal was not opened. Treat the device as suspect: check "
        "it, then open the journal again, after a reboot or a remount of its file system"
    )
    return error


def _cut_tail(file_io: FileIO, tail: TornTail, *, durable: bool) -> None:
    fd = file_io.open(tail.path, os.O_RDWR)
    try:
        file_io.ftruncate(fd, tail.offset)
        if durable:
            file_io.fsync(fd)
    finally:
        file_io.close(fd)
