"""The clean-close record: what the journal's end was when it was last closed cleanly.

A torn tail (a batch cut by a crash before its fsync returned) and a damaged last batch (bytes
that changed after they were acknowledged) look the same in a segment: a record that fails its
checksum, or a batch without its commit record, at the end of the last segment. Opening cuts
the first kind; it must refuse the second. Only the history of the directory tells them apart.

The snapshot file is the same: a snapshot cut short by a crash is a torn tail, a damaged last
snapshot looks just like one.

So a journal that closes cleanly (every batch committed, no failure, durable, each file holding
exactly what was written to it) writes this record last, into the file ``closed-cleanly``: the
last segment's first position, its size, the chain hash at its end and the snapshot file's
size. A crash never leaves the record behind: it is written after the last fsync of a close,
and opening removes it (durably) before the journal can append again. When opening finds it,
the journal ended exactly there, with nothing torn, so any difference (a torn tail in a segment
or in the snapshot file, a torn segment creation, another last segment, another size or hash)
is damage, and opening refuses it as ``JournalCorrupted`` instead of cutting it.

The record is 68 bytes: an 8-byte magic (``EFCLOSE2``), the position and the segment's size
(unsigned 64-bit little-endian), the 32-byte hash, the snapshot file's size, and a CRC-32 of the
rest. The 60-byte record of earlier versions (``EFCLOSE1``, without the snapshot file's size)
is still read; it says nothing about snapshots. A record that fails its checks does not say
anything: opening then treats the end of the journal as after a crash, and logs a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from dataclasses import dataclass

from ._codec import HASH_BYTES, crc32
from ._exceptions import JournalCorrupted
from ._fileio import FileIO
from ._recovery import TornTail

logger = logging.getLogger("journals.file")

CLEAN_CLOSE_FILE_NAME = "closed-cleanly"
_MAGIC = b"EFCLOSE2"
_BODY = struct.Struct(f"<8sQQ{HASH_BYTES}sQ")
_CRC = struct.Struct("<I")
RECORD_BYTES = _BODY.size + _CRC.size
_MAGIC_WITHOUT_SNAPSHOTS = b"EFCLOSE1"  # Written by earlier versions: no snapshot file size.
_BODY_WITHOUT_SNAPSHOTS = struct.Struct(f"<8sQQ{HASH_BYTES}s")


@dataclass(frozen=True, slots=True)
class CleanClose:
    """The end of a journal closed cleanly: its last segment, that file's size, its hash, and
    the snapshot file's size (None in a record of an earlier version, which did not keep it)."""

    first_position: int
    size: int
    final_hash: bytes
    snapshots_size: int | None

    def encode(self) -> bytes:
        if self.snapshots_size is None:
            raise ValueError("a clean-close record is written with the snapshot file's size")
        body = _BODY.pack(
            _MAGIC, self.first_position, self.size, self.final_hash, self.snapshots_size
        )
        return body + _CRC.pack(crc32(body))

    @classmethod
    def decode(cls, data: bytes) -> CleanClose | None:
        """The record in ``data``; None for bytes that are not one (wrong size, magic or CRC)."""
        snapshots_size: int | None
        if len(data) == RECORD_BYTES:
            body = data[: _BODY.size]
            magic, first_position, size, final_hash, snapshots_size = _BODY.unpack(body)
            expected = _MAGIC
        elif len(data) == _BODY_WITHOUT_SNAPSHOTS.size + _CRC.size:
            body = data[: _BODY_WITHOUT_SNAPSHOTS.size]
            magic, first_position, size, final_hash = _BODY_WITHOUT_SNAPSHOTS.unpack(body)
            snapshots_size, expected = None, _MAGIC_WITHOUT_SNAPSHOTS
        else:
            return None
        if _CRC.unpack_from(data, len(body))[0] != crc32(body):
            return None
        if magic != expected or first_position < 1:
            return None
        return cls(first_position, size, final_hash, snapshots_size)


def write_clean_close(file_io: FileIO, directory: str, record: CleanClose) -> None:
    """Store ``record`` durably: a temporary file, fsynced, renamed, the directory fsynced."""
    path = os.path.join(directory, CLEAN_CLOSE_FILE_NAME)
    temporary = path + ".tmp"
    fd = file_io.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        file_io.pwrite_all(fd, record.encode(), 0)
        file_io.fsync(fd)
    finally:
        file_io.close(fd)
    file_io.replace(temporary, path)
    file_io.fsync_directory(directory)


def read_clean_close(directory: str) -> CleanClose | None:
    """The record the last clean close left, or None (no record, or one that says nothing)."""
    path = os.path.join(directory, CLEAN_CLOSE_FILE_NAME)
    try:
        with open(path, "rb") as file:
            data = file.read(RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    record = CleanClose.decode(data)
    if record is None:
        logger.warning(
            "%s is not a valid clean-close record (%d bytes); the end of the journal is "
            "checked as after a crash: a torn tail is cut",
            path,
            len(data),
        )
    return record


def remove_clean_close(file_io: FileIO, directory: str) -> None:
    """Remove the record durably, before the journal appends again (a crash may follow)."""
    path = os.path.join(directory, CLEAN_CLOSE_FILE_NAME)
    with contextlib.suppress(FileNotFoundError):
        file_io.remove(path + ".tmp")  # Left by a crash while a close wrote the record.
    try:
        file_io.remove(path)
    except FileNotFoundError:
        return
    # Always synced, even for a journal that does not sync its appends: if the removal were
    # lost and later appends were not, the record would call the grown journal damaged.
    file_io.fsync_directory(directory)


def refuse_unclean_end(
    record: CleanClose,
    directory: str,
    segments: list[tuple[int, str]],
    dropped: TornTail | None,
    tail: TornTail | None,
    final_hash: bytes,
) -> None:
    """Raise ``JournalCorrupted`` if the journal does not end where its clean close left it.

    ``segments`` are the (first position, path) of the segment files after ``dropped`` (a last
    segment with an incomplete header, as after a crash while creating it) was taken off;
    ``tail`` is the torn tail the scan of the last of them found, if any, and ``final_hash``
    the chain hash at the end of what it found committed.
    """
    advice = _advice(directory, "The journal refuses to open rather than cut acknowledged events.")
    closed = (
        f"the journal was closed cleanly with its last segment starting at position "
        f"{record.first_position}, {record.size} bytes long"
    )
    if dropped is not None:
        raise JournalCorrupted(
            dropped.path, 0, f"segment file with an incomplete header, but {closed}", advice=advice
        )
    if not segments:
        return  # Refused by refuse_leftovers: a clean-close record with no segment.
    first, path = segments[-1]
    if first < record.first_position:
        raise JournalCorrupted(
            path, 0, f"the segments after this one are missing: {closed}", advice=advice
        )
    if first > record.first_position:
        raise JournalCorrupted(
            path, 0, f"this segment was added after the journal was closed: {closed}", advice=advice
        )
    size = os.path.getsize(path)
    if tail is not None:
        raise _damage_not_torn(path, tail, closed, advice)
    if size != record.size:
        raise JournalCorrupted(
            path,
            min(size, record.size),
            f"the segment is {size} bytes long, but {closed}",
            advice=advice,
        )
    if final_hash != record.final_hash:
        raise JournalCorrupted(
            path,
            size,
            f"the hash chain ends in another hash than the one recorded when {closed}: its "
            f"last batches were rewritten",
            advice=advice,
        )


def refuse_unclean_snapshots(
    record: CleanClose, path: str, size: int, tail: TornTail | None
) -> None:
    """Raise ``JournalCorrupted`` if the snapshot file in ``path`` (``size`` bytes, with the
    torn ``tail`` its read found, if any) does not end where the clean close left it."""
    advice = _advice(
        os.path.dirname(path),
        "The journal refuses to open rather than cut snapshots it wrote. No event is lost with "
        "them (an entity without its snapshot is replayed from its events).",
    )
    if tail is not None and tail.offset == 0:
        # A file whose header is incomplete (a torn creation). A journal that was open had
        # synced the header, so after a clean close of any version no crash can leave this.
        closed = "the journal was closed cleanly after the snapshot file was created"
        raise _damage_not_torn(path, tail, closed, advice)
    if record.snapshots_size is None:
        return  # A record of an earlier version: it did not keep the snapshot file's size.
    closed = (
        f"the journal was closed cleanly with its snapshot file {record.snapshots_size} bytes long"
    )
    if tail is not None:
        raise _damage_not_torn(path, tail, closed, advice)
    if size != record.snapshots_size:
        found = f"{size} bytes long" if size or os.path.exists(path) else "missing"
        raise JournalCorrupted(
            path,
            min(size, record.snapshots_size),
            f"the snapshot file is {found}, but {closed}",
            advice=advice,
        )


def _damage_not_torn(path: str, tail: TornTail, closed: str, advice: str) -> JournalCorrupted:
    return JournalCorrupted(
        path,
        tail.offset,
        f"{tail.reason}, where a crash would leave a torn tail, but {closed}: this is damage, "
        f"not a torn write",
        advice=advice,
    )


def _advice(directory: str, refusal: str) -> str:
    return (
        f"{refusal} Restore the files from a replica or backup; or, to accept losing what "
        f"follows this offset, remove {os.path.join(directory, CLEAN_CLOSE_FILE_NAME)} and "
        f"open the journal again: the damaged end is then cut as after a crash."
    )
