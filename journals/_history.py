"""A journal directory's committed history, read as opening reads it, without changing a file.

``verify_journal``, ``read_journal_files`` and ``export_checkpoint`` all walk the segments
through ``JournalScan``, so they refuse exactly what opening refuses: a bad byte anywhere but in
a torn tail, a small last segment file that no roll created, an end other than the one a clean
close recorded (``closed-cleanly``: then nothing at the end can be torn), and a snapshot above
its stream's last event or a snapshot file other than the clean close left it, a directory
where opening reads, writes or removes a file (``closed-cleanly``, its ``.tmp``,
``snapshots.dat.tmp``, a sealed segment's index file), and anything but a regular file named
like a segment or in place of the lock file or ``snapshots.dat``. Nothing here takes the
journal's lock, cuts a torn tail or removes a file.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from ._clean_close import (
    CLEAN_CLOSE_FILE_NAME,
    CleanClose,
    read_clean_close,
    refuse_unclean_end,
    refuse_unclean_snapshots,
)
from ._codec import ZERO_HASH
from ._codec import index_file_name as _index_name
from ._exceptions import (
    JournalCorrupted,
    JournalKeptChanging,
    JournalNotFound,
    NotAJournalDirectory,
)
from ._file_open import (
    check_segment_start,
    refuse_leftovers,
    refuse_unrolled_segment,
    torn_last_segment,
)
from ._file_snapshots import SNAPSHOT_FILE_NAME, SnapshotStore, UnusedSnapshots
from ._fileio import FileIO
from ._fileio import read_segment_file as read_segment_file  # What the tools read.
from ._files_in_place import (
    list_segments,
    refuse_lock_file_in_place,
    refuse_non_file_in_place,
    refuse_non_files_in_place,
)
from ._recovery import SegmentScan, TornTail, scan_segment
from ._snapshot_compaction import TEMPORARY_SUFFIX
from ._validation import check_key

SCAN_ATTEMPTS = 3
"""Scans of a journal that changed while it was read (``JournalScan.segments``), before the
tools give up: a journal opened or closed during every one of them is being cycled on purpose."""


def check_journal_directory(directory: str) -> None:
    """Raise ``NotAJournalDirectory`` or ``JournalNotFound`` unless ``directory`` is one."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotAJournalDirectory(f"{directory} exists and is not a directory: not a journal")
    if not os.path.isdir(directory):
        raise JournalNotFound(f"no journal directory at {directory}")


def listed_segments(directory: str) -> tuple[list[tuple[int, str]], TornTail | None]:
    """The segment files that may hold history, and a torn last segment creation taken off.

    A roll interrupted by a crash (or in progress in a live journal) leaves the new segment
    without its whole header: like a torn tail, it holds nothing durable, and opening removes
    it; whether it is the one a roll creates is checked at the end of the scan. With no
    segments, ``refuse_leftovers`` says whether the directory lost them.
    """
    segments = list_segments(directory)
    dropped = torn_last_segment(segments)
    if dropped is not None:
        segments.pop()
    return segments, dropped


def journal_segments(directory: str) -> tuple[list[tuple[int, str]], TornTail | None]:
    """``listed_segments`` of a directory that ``check_journal_directory`` accepts."""
    check_journal_directory(directory)
    return listed_segments(directory)


@dataclass(frozen=True, slots=True)
class ScannedSegment:
    """One segment's scan, with what opening knew before it (for its index file)."""

    scan: SegmentScan
    segments: list[tuple[int, str]]
    number: int
    chain_before: bytes
    versions_before: dict[bytes, int] | None  # Kept only when asked for.

    @property
    def sealed(self) -> bool:
        return self.number < len(self.segments) - 1


class JournalScan:
    """Scan a journal directory's segments in order; raise ``JournalCorrupted`` where opening
    would refuse.

    ``segments()`` yields each segment's scan; once the last one was yielded, before the
    iteration ends, it checks the end of the journal (``end_checked`` is then True).
    ``check_snapshots()`` checks the snapshot file against the streams' versions found.
    A reader that must not hand out history opening refuses uses a segment's events only
    once the next segment was scanned, or the iteration and ``check_snapshots()`` completed.

    A journal that was opened or closed during the scan (its clean-close record differs after
    the scan from before it) is scanned again: ``segments()`` then yields the segments once
    more from the first (``number`` 0), and a consumer starts over with them. What it took
    from a sealed segment before stays true: a journal never rewrites a sealed segment. After
    ``SCAN_ATTEMPTS`` scans that all saw the journal change, it raises ``JournalKeptChanging``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: bytes | bytearray | memoryview | None,
        *,
        keep_versions: bool = False,
    ) -> None:
        self.directory = os.fspath(path)
        self.key = check_key(key)
        self.keep_versions = keep_versions
        self.versions: dict[bytes, int] = {}  # Stream id to version, filled in as it goes.
        self.dropped: TornTail | None = None  # A torn last segment creation, not scanned.
        self.last: SegmentScan | None = None
        self.clean: CleanClose | None = None  # Read once every segment checked out.
        self.end_checked = False
        # The snapshot file as read before the segments: the store and its torn tail, or what
        # its read refused (raised by check_snapshots, after the segments' own refusals).
        self._snapshots: tuple[SnapshotStore, TornTail | None] | JournalCorrupted | None = None

    def segments(self) -> Iterator[ScannedSegment]:
        check_journal_directory(self.directory)
        # Opening refuses anything but a file where it takes its lock, before anything else.
        refuse_lock_file_in_place(self.directory)
        # Opening reads the clean-close record, then removes it and the temporary file a close
        # may have left: it refuses a directory in place of either before it reads anything.
        refuse_non_files_in_place(os.path.join(self.directory, CLEAN_CLOSE_FILE_NAME))
        # And it removes what a crash during a snapshot compaction left, never a directory.
        refuse_non_file_in_place(
            os.path.join(self.directory, SNAPSHOT_FILE_NAME + TEMPORARY_SUFFIX)
        )
        for _attempt in range(SCAN_ATTEMPTS):
            # The record is read before the scan and again after it. A journal that closed
            # cleanly meanwhile (or was opened, or opened and closed) leaves a record that does
            # not describe what was scanned: the scan starts over. The same record both times
            # means the journal was closed throughout, and the scan is held to it.
            before = read_clean_close(self.directory)
            segments = yield from self._scan()
            if read_clean_close(self.directory) == before:
                self.clean = before
                self._check_end(segments)
                self.end_checked = True
                return
        raise JournalKeptChanging(
            f"the journal in {self.directory} kept changing while it was read (it was opened "
            f"or closed during each of {SCAN_ATTEMPTS} scans), so its files never showed one "
            f"state to check; read it again when it is either open or closed for a while"
        )

    def _scan(self) -> Generator[ScannedSegment, None, list[tuple[int, str]]]:
        """One pass over the segments; answers the segment files it read."""
        self.versions = {}
        self.last = None
        # The snapshot file is read before the segments are listed and read. A live journal
        # saves a snapshot only at a version already durable, so every snapshot read here is
        # at or below what the segments hold when they are read afterwards; read the other way
        # round, a snapshot saved in between would stand above the events scanned.
        self._read_snapshots()
        segments, self.dropped = listed_segments(self.directory)
        if not segments:
            refuse_leftovers(self.directory)
        chain = ZERO_HASH
        expected_first = 1
        for number, (first, path) in enumerate(segments):
            check_segment_start(path, first, expected_first)
            index_file = os.path.join(self.directory, _index_name(first))
            if number < len(segments) - 1:
                # Opening cannot read a sealed segment's index file there, so it rebuilds the
                # file, and refuses to write it over a directory.
                refuse_non_file_in_place(index_file)
            else:
                # Opening refuses a directory where the next roll writes the last one's.
                refuse_non_files_in_place(index_file)
            before = dict(self.versions) if self.keep_versions else None
            scan = scan_segment(
                read_segment_file(path),
                path,
                first_position=first,
                previous_hash=chain,
                key=self.key,
                versions=self.versions,
                is_last=number == len(segments) - 1,
            )
            self.last = scan
            yield ScannedSegment(scan, segments, number, chain, before)
            chain = scan.final_hash
            expected_first = first + scan.event_count
        return segments

    def _check_end(self, segments: list[tuple[int, str]]) -> None:
        """Refuse the end of the journal as opening does (see ``_clean_close``)."""
        last = self.last
        if self.dropped is not None:
            # Only the segment a roll creates is a torn creation; opening refuses any other.
            refuse_unrolled_segment(self.dropped, 0 if last is None else last.last_position)
        if last is None:
            return  # No segments: no journal yet, and no record (refuse_leftovers).
        if self.clean is not None:
            refuse_unclean_end(
                self.clean, self.directory, segments, self.dropped, last.tail, last.final_hash
            )

    def _read_snapshots(self) -> None:
        try:
            self._snapshots = SnapshotStore.read(
                FileIO(), self.directory, durable=False, key=self.key
            )
        except JournalCorrupted as error:
            self._snapshots = error

    def unused_snapshots(self) -> tuple[UnusedSnapshots, ...]:
        """The snapshot records the file was read with that opening would not use (see
        ``SnapshotStore.unused``); none when it could not be read."""
        read = self._snapshots
        if read is None or isinstance(read, JournalCorrupted):
            return ()
        return tuple(read[0].unused.values())

    def check_snapshots(self) -> TornTail | None:
        """Check the snapshot file as opening does; answer its torn tail (opening cuts it).

        The file is the one ``segments()`` read before the segments (read now if the scan
        stopped before it). The streams' versions are used when every segment was scanned and
        the end checked out (a snapshot above its stream's last event is refused: events it
        covers were lost); the clean close's record, when one was read, must match the file's
        end.
        """
        if self._snapshots is None:
            self._read_snapshots()
        read = self._snapshots
        if isinstance(read, JournalCorrupted):
            raise read
        assert read is not None
        store, tail = read
        if self.clean is not None:
            refuse_unclean_snapshots(self.clean, store.path, store.size, tail)
        if self.end_checked:
            store.check_versions(
                {stream.decode("utf-8"): range(n) for stream, n in self.versions.items()}
            )
        return tail
