"""The write side of a FileJournal's segments. Runs in the committer's worker thread.

``SegmentWriter.commit`` turns one batch of encoded event frames into one write (events plus
their commit record) made durable by one sync (one system call where the OS offers a synced
write: ``FileIO.write_durably``), rolling to a new segment first when asked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from ._clean_close import CleanClose, write_clean_close
from ._codec import (
    SEGMENT_HEADER_BYTES,
    chain_hash,
    encode_commit,
    encode_segment_header,
    index_file_name,
    segment_file_name,
)
from ._fileio import FileIO
from ._index import SegmentIndex

logger = logging.getLogger("journals.file")


@dataclass(frozen=True, slots=True)
class RollPlan:
    """Seal the active segment with this index file, then start a segment at ``first_position``."""

    index_file: bytes
    first_position: int


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Where a batch landed: its base offset, and the new segment if the writer rolled.

    ``seconds``: how long the write and its fdatasync took, in the writer thread.
    """

    base_offset: int
    new_segment: SegmentIndex | None
    new_read_fd: int | None
    seconds: float


class SegmentWriter:
    """Appends batches to the active segment. Invariant: ``size`` is its committed length."""

    def __init__(
        self,
        file_io: FileIO,
        directory: str,
        segment: SegmentIndex,
        fd: int,
        *,
        key: bytes | None,
        durable: bool,
    ) -> None:
        self._io = file_io
        self._directory = directory
        self.segment = segment
        self._fd = fd
        self._key = key
        self.durable = durable  # Whether batches are fsynced (False: written only).
        self.size = segment.durable_end
        self.chain = segment.final_hash
        self.fsyncs = 0  # Every fsync: of batches, and of a roll's files and directory.
        self.batch_fsyncs = 0  # Only those that made a batch durable.
        self.batch_sync_s = 0.0  # The time their writes and fsyncs took.
        self.bytes_written = 0
        self._lock = threading.Lock()

    @property
    def directory(self) -> str:
        """The journal's directory, for messages."""
        return self._directory

    def commit(
        self,
        frames: list[bytes],
        first_position: int,
        last_position: int,
        roll: RollPlan | None,
        entering_io: Callable[[], None],
    ) -> CommitOutcome:
        """Write the batch and its commit record in one write, made durable by one sync.

        ``entering_io`` is called once everything before the write is done, just before it.
        """
        with self._lock:
            new_segment = None
            read_fd = None
            if roll is not None:
                new_segment, read_fd = self._roll(roll)
            try:
                started = time.perf_counter()
                batch = b"".join(frames)
                hashed = chain_hash(self.chain, batch, self._key)
                data = batch + encode_commit(first_position, last_position, hashed)
                base = self.size
                entering_io()
                if self.durable:
                    syncing = time.perf_counter()
                    self._io.write_durably(self._fd, data, base)
                    self.batch_sync_s += time.perf_counter() - syncing
                    self.fsyncs += 1
                    self.batch_fsyncs += 1
                else:
                    self._io.pwrite_all(self._fd, data, base)
                self.bytes_written += len(data)
                # Only now, after the fsync succeeded, does the batch count as committed.
                self.size = base + len(data)
                self.chain = hashed
                return CommitOutcome(base, new_segment, read_fd, time.perf_counter() - started)
            except BaseException:
                # The outcome, and with it the new segment's read descriptor, never reaches the
                # committer (its journal fails): closed here, or each failure at a roll keeps one.
                if read_fd is not None:
                    _close_after_failure(os.close, read_fd)
                raise

    def _roll(self, plan: RollPlan) -> tuple[SegmentIndex, int]:
        first = self.segment.first_position
        index_path = os.path.join(self._directory, index_file_name(first))
        temporary = index_path + ".tmp"
        fd = self._io.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._io.pwrite_all(fd, plan.index_file, 0)
            if self.durable:
                self._io.fsync(fd)
                self.fsyncs += 1
        finally:
            self._io.close(fd)
        self._io.replace(temporary, index_path)
        path = os.path.join(self._directory, segment_file_name(plan.first_position))
        new_fd = create_segment(
            self._io,
            path,
            plan.first_position,
            self.chain,
            key=self._key,
            durable=self.durable,
        )
        try:
            if self.durable:
                self._io.fsync_directory(self._directory)
                self.fsyncs += 2
            read_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            _close_after_failure(self._io.close, new_fd)
            raise
        # The new segment is the writer's before the old one is closed: a close that reports
        # an error (EIO, on a network file system) has released the descriptor all the same,
        # and its number may be another file's by the time the writer closes ``_fd``.
        old_fd, self._fd = self._fd, new_fd
        self.segment = SegmentIndex(
            path, plan.first_position, array("I"), SEGMENT_HEADER_BYTES, self.chain
        )
        self.size = SEGMENT_HEADER_BYTES
        try:
            self._io.close(old_fd)
        except BaseException:
            _close_after_failure(os.close, read_fd)
            raise
        return self.segment, read_fd

    def close(self, *, snapshots_size: int | None = None) -> None:
        """Close the segment. ``snapshots_size``: given when every batch handed over was
        committed, nothing failed and the snapshot file holds exactly that many bytes, all
        written; then a durable journal records where it ends (see ``_clean_close``)."""
        with self._lock:
            if self._fd < 0:
                return
            # Only if the file holds exactly what was committed: a write whose sync did not
            # return may have left bytes after it, which the next open must cut.
            if (
                snapshots_size is not None
                and self.durable
                and os.fstat(self._fd).st_size == self.size
            ):
                record = CleanClose(
                    self.segment.first_position, self.size, self.chain, snapshots_size
                )
                try:
                    write_clean_close(self._io, self._directory, record)
                except OSError as error:
                    # Without the record the next open checks the end as after a crash, which
                    # is safe; what is written is durable already, so the close goes on.
                    logger.warning(
                        "could not record the clean close of %s (%r); the next open checks "
                        "its end as after a crash",
                        self._directory,
                        error,
                    )
            self._io.close(self._fd)
            self._fd = -1


def _close_after_failure(close: Callable[[int], None], fd: int) -> None:
    """Close ``fd``, which the failure being raised leaves to no one; an error of this close
    (the descriptor is released all the same) must not hide that failure."""
    try:
        close(fd)
    except OSError as error:
        logger.warning("closing a descriptor after a failed roll or write failed: %r", error)


def create_segment(
    file_io: FileIO,
    path: str,
    first_position: int,
    previous_hash: bytes,
    *,
    key: bytes | None,
    durable: bool,
) -> int:
    """Create a segment file with its header, fsynced; answer its fd open for writing.

    The caller fsyncs the directory so the new name is durable too.
    """
    fd = file_io.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        file_io.pwrite_all(
            fd,
            encode_segment_header(first_position, previous_hash, keyed=key is not None, key=key),
            0,
        )
        if durable:
            file_io.fsync(fd)
    except BaseException:
        file_io.close(fd)
        raise
    return fd
