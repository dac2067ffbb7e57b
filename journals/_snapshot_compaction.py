"""Compacting the snapshot file: write the snapshots kept into a new file, make it durable,
rename it over the old one, sync the directory.

The new file is an ordinary snapshot file (same header, same records, copied byte for byte in
their old order), so nothing that reads one changes: a keyed record's MAC covers its own body
only, so a copy is as valid as the original. Until the rename nothing the journal uses
depends on the new file: a failure before it removes the temporary file and leaves the journal
as it was (``SnapshotCompactionFailed``). The rename is atomic, so a crash at any moment leaves
``snapshots.dat`` either the old file or the whole new one, both valid; a failed rename or
directory sync leaves it unknown which, and fails the store like a failed snapshot write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ._codec import (
    KIND_KEYED_SNAPSHOT,
    KIND_SNAPSHOT,
    SNAPSHOT_FILE_HEADER_BYTES,
    RecordError,
    read_frame,
)
from ._codec import encode_snapshot_file_header as _file_header
from ._exceptions import JournalCorrupted
from ._fileio import FileIO

TEMPORARY_SUFFIX = ".tmp"
"""The new file is written as ``snapshots.dat.tmp``; opening removes one a crash left."""
COPY_BYTES = 1 << 20
"""About the most bytes of records read from the old file at a time."""
_SNAPSHOT_KINDS = (KIND_SNAPSHOT, KIND_KEYED_SNAPSHOT)


@dataclass(frozen=True, slots=True)
class SnapshotCompaction:
    """What a compaction of the snapshot file did: snapshots and bytes before and after."""

    snapshots_before: int
    snapshots_after: int
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True, slots=True)
class Kept:
    """A snapshot record to copy: where it is in the old file and how long it is."""

    offset: int
    length: int


class BeforeRename(Exception):
    """Wraps the ``OSError`` of a step before the rename: the old file is untouched."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def write_compacted(
    file_io: FileIO, path: str, old_fd: int, kept: list[Kept], *, durable: bool
) -> tuple[int, list[int]]:
    """Write ``kept`` (in file order) from ``old_fd`` into a new file that replaces ``path``.

    Answers the new file's descriptor (open for appends) and each kept record's new offset.
    Raises ``BeforeRename`` for a failure before the rename (the temporary file is removed),
    the ``OSError`` itself for a failed rename or directory sync, and ``JournalCorrupted``
    for a record that no longer checks out in the old file (nothing is renamed then).
    """
    temporary = path + TEMPORARY_SUFFIX
    try:
        fd = file_io.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as error:
        raise BeforeRename(error) from error
    try:
        offsets = _copy(file_io, path, old_fd, fd, kept)
        if durable:
            file_io.fsync(fd)
    except BaseException as error:
        file_io.close(fd)
        with contextlib.suppress(OSError):
            file_io.remove(temporary)
        if isinstance(error, OSError):
            raise BeforeRename(error) from error
        raise
    try:
        file_io.replace(temporary, path)
        if durable:
            file_io.fsync_directory(os.path.dirname(path))
    except BaseException:
        file_io.close(fd)
        raise
    return fd, offsets


def _copy(file_io: FileIO, path: str, old_fd: int, fd: int, kept: list[Kept]) -> list[int]:
    """Copy the records, checking each one just before it is written (a pair assertion with
    the check made when the file was read on open)."""
    header = _file_header()
    file_io.pwrite_all(fd, header, 0)
    written = SNAPSHOT_FILE_HEADER_BYTES
    offsets: list[int] = []
    for start, records in _runs(kept):
        end = records[-1].offset + records[-1].length
        raw = file_io.pread(old_fd, end - start, start)
        for record in records:
            _check(path, raw, record.offset - start, record)
            offsets.append(written + record.offset - start)
        file_io.pwrite_all(fd, raw, written)
        written += len(raw)
    return offsets


def _check(path: str, raw: bytes, at: int, record: Kept) -> None:
    try:
        if len(raw) < at + record.length:
            raise RecordError("the file ends inside it")
        body, end = read_frame(raw, at)
        if end != at + record.length or raw[body] not in _SNAPSHOT_KINDS:
            raise RecordError("it is not the snapshot record indexed there")
    except RecordError as error:
        raise JournalCorrupted(
            path,
            record.offset,
            f"a snapshot record changed since the file was opened ({error}); the snapshot "
            f"file was not compacted",
            during="read",
        ) from None


def _runs(kept: list[Kept]) -> Iterator[tuple[int, list[Kept]]]:
    """Group records that follow each other in the old file into reads of about
    ``COPY_BYTES`` (a record larger than that is read alone)."""
    run: list[Kept] = []
    start = end = 0
    for record in kept:
        if run and (record.offset != end or end - start + record.length > COPY_BYTES):
            yield start, run
            run = []
        if not run:
            start = record.offset
        run.append(record)
        end = record.offset + record.length
    if run:
        yield start, run


def remove_leftover(file_io: FileIO, path: str) -> bool:
    """Remove the temporary file a crash during a compaction left; answer whether one was."""
    try:
        file_io.remove(path + TEMPORARY_SUFFIX)
    except FileNotFoundError:
        return False
    return True
