"""Checking the snapshot file record by record, a piece of it at a time (opening, the tools).

The snapshot file has no size limit of its own (saves append to it for as long as the journal
runs), so it cannot be refused by its size the way a segment is; and a sparse file of many
GiB at its name must not be read into memory whole. So it is read through a window of about
``WINDOW_BYTES`` that moves along the file: each record is checked as it comes (frame,
checksum, kind, fields), and only its stream, version, offset and length are kept. A record
longer than the window is read on its own, and no record is longer than a frame header and
``RECORD_BODY_BYTES_MAX``: what the scan holds at a time is bounded, whatever the file's size.
Given the key of a keyed journal, the MAC of each keyed record is checked as it comes too, and
what came of it is passed on with the record (which records a journal uses is the store's
decision, ``_codec.snapshot_unusable``).

The search for a valid record after a bad one (``_valid_record_after``) goes through the rest
of the file in the same pieces, and skips the file's holes (``SEEK_DATA``): a hole reads as
zeros, where no record can begin, and reading GiB of them would cost seconds for nothing.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable

from ._codec import (
    FRAME,
    FRAME_BYTES,
    KIND_KEYED_SNAPSHOT,
    KIND_SNAPSHOT,
    RECORD_BODY_BYTES_MAX,
    SNAPSHOT_FILE_HEADER_BYTES,
    SNAPSHOT_HEADER,
    SNAPSHOT_HEADER_BYTES,
    SNAPSHOT_MAC_BYTES,
    RecordError,
    check_snapshot_file_header,
    decode_snapshot,
    read_frame,
)
from ._codec import crc32 as crc32
from ._exceptions import JournalCorrupted
from ._recovery import TornTail

WINDOW_BYTES = 1 << 20
"""About the most bytes of the file read at a time, but for a record longer than that."""

SEARCH_CHECKSUM_FACTOR = 4
"""Checksums computed while looking for a valid record after a bad one cover at most this many
times the bytes searched (plus ``SEARCH_CHECKSUM_BYTES_MIN``)."""
SEARCH_CHECKSUM_BYTES_MIN = 1 << 20

Found = Callable[[str, int, int, int, str], None]
"""Called with the stream id, version, offset and length of each record that checked out, and
what came of its MAC (``_codec.SNAPSHOT_MAC_*``)."""

_SEEK_DATA: int | None = getattr(os, "SEEK_DATA", None)
_SNAPSHOT_KINDS = (KIND_SNAPSHOT, KIND_KEYED_SNAPSHOT)
_SNAPSHOT_KIND_BYTE = re.compile(b"[" + bytes(_SNAPSHOT_KINDS) + b"]")
_unpack_length_from = FRAME.unpack_from


def scan_snapshot_file(
    fd: int, size: int, path: str, found: Found, key: bytes | None = None
) -> tuple[int, TornTail | None]:
    """Check the snapshot file open at ``fd`` up to ``size`` (its size when opened; what is
    appended later is not read), calling ``found`` for each record (its MAC checked against
    ``key`` when one is given); answer the size read (less than ``size`` if the file was cut
    meanwhile) and the torn tail opening cuts. A MAC that does not hold is no damage to the
    file (its frame checked out): the record is passed on, said so.

    Only a frame that does not check out (partial, or failing its checksum) can be a torn
    tail: a whole frame whose body is not a snapshot record was written so, not torn.

    Raises ``JournalCorrupted`` for a header that does not check out, for a bad frame that a
    valid one follows, and for a whole frame that is no snapshot record, wherever it is; the
    ``OSError`` of a failing read.
    """
    window = _Window(fd, size)
    at = window.cover(0, SNAPSHOT_FILE_HEADER_BYTES)
    try:
        check_snapshot_file_header(window.data[at : at + SNAPSHOT_FILE_HEADER_BYTES])
    except RecordError as error:
        raise JournalCorrupted(path, 0, str(error)) from None
    offset = SNAPSHOT_FILE_HEADER_BYTES
    data, base, size = window.data, window.start, window.size
    while offset < size:
        at = offset - base
        try:
            if at + FRAME_BYTES > len(data) or at + FRAME_BYTES + _unpack_length_from(data, at)[
                0
            ] > len(data):
                # The window ends inside the record: move it (the usual case is a record
                # that lies in the window, which this comparison alone checks).
                at = _cover_record(window, offset)
                data, base, size = window.data, window.start, window.size
            start, end = read_frame(data, at)
        except RecordError as error:
            if _valid_record_after(fd, offset + 1, size):
                raise JournalCorrupted(path, offset, str(error)) from None
            return size, TornTail(path, offset, size - offset, f"{error} at {offset}")
        try:
            if data[start] not in _SNAPSHOT_KINDS:
                raise RecordError(f"record kind {data[start]} in the snapshot file")
            fields = decode_snapshot(data[start:end], key)
        except RecordError as error:
            # Its frame checked out: it was written whole, so no crash left it. Damage, at the
            # end of the file too, as in a segment.
            raise JournalCorrupted(path, offset, str(error)) from None
        found(fields.stream_id, fields.version, offset, end - at, fields.mac)
        offset += end - at
    return size, None


def _cover_record(window: _Window, offset: int) -> int:
    """Move ``window`` to hold the record at ``offset`` whole, or what the file holds of it
    (``read_frame`` then says how much is missing, as of a file read whole); answer where
    the record is in the window's data."""
    at = window.cover(offset, FRAME_BYTES)
    data = window.data
    if len(data) - at >= FRAME_BYTES:
        length = _unpack_length_from(data, at)[0]
        if 0 < length <= RECORD_BODY_BYTES_MAX:  # Else read_frame refuses the length.
            at = window.cover(offset, FRAME_BYTES + length)
    return at


class _Window:
    """The bytes of the file from ``start`` on, at most ``WINDOW_BYTES`` but for one record.

    Invariant: ``start + len(data) <= size``; ``size`` is the file's size when the scan began,
    or where a read found the file ending since (cut meanwhile).
    """

    __slots__ = ("data", "fd", "size", "start")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.start = 0
        self.data = b""

    def cover(self, offset: int, length: int) -> int:
        """Make ``data`` hold the bytes from ``offset`` for ``length`` bytes, or to the end of
        the file if it ends before; answer where ``offset`` is in ``data``."""
        end = min(offset + length, self.size)
        if offset < self.start or end > self.start + len(self.data):
            wanted = min(max(end - offset, WINDOW_BYTES), self.size - offset)
            self.data = os.pread(self.fd, wanted, offset)
            self.start = offset
            if len(self.data) < wanted:
                self.size = offset + len(self.data)  # The file was cut since it was opened.
        return offset - self.start


def _valid_record_after(fd: int, start: int, end: int) -> bool:
    """Whether a valid snapshot record may start at or after ``start`` (framing is lost), in
    the file open at ``fd`` that ends at ``end``.

    Linear in the bytes searched, even for a hostile file: only offsets whose body starts with
    a snapshot kind byte (3 or 4) are candidates (found with one regular expression of a byte
    class), a candidate's checksum is
    computed only when its frame fits in what is left of the file and its header's field
    lengths fit in its frame, and all checksums together cover at most
    ``SEARCH_CHECKSUM_FACTOR`` times the bytes searched. A file that would need more answers
    True: the bad record is then refused as damage, never cut as a torn tail on a guess.
    The file is read ``WINDOW_BYTES`` at a time (a candidate longer than what is read of it
    on its own), its holes skipped: they hold only zeros, and no kind byte.
    """
    budget = SEARCH_CHECKSUM_FACTOR * max(0, end - start) + SEARCH_CHECKSUM_BYTES_MIN
    searched = start + FRAME_BYTES  # Where the next candidate's kind byte may be.
    while True:
        last = end - SNAPSHOT_HEADER_BYTES  # Where the last candidate's kind byte may be.
        if searched > last:
            return False
        data_at = _next_data(fd, searched)
        if data_at is None or data_at > last:
            return False
        searched = data_at
        piece_start = searched - FRAME_BYTES
        piece_end = min(end, searched + WINDOW_BYTES + SNAPSHOT_HEADER_BYTES)
        piece = os.pread(fd, piece_end - piece_start, piece_start)
        if len(piece) < piece_end - piece_start:
            end = piece_start + len(piece)  # Cut since the scan began: search what is left.
            continue
        stop = min(searched + WINDOW_BYTES, last + 1) - piece_start
        view = memoryview(piece)
        candidate = _SNAPSHOT_KIND_BYTE.search(piece, FRAME_BYTES, stop)
        while candidate is not None:
            kind_at = candidate.start()
            length, crc = FRAME.unpack_from(piece, kind_at - FRAME_BYTES)
            if (
                SNAPSHOT_HEADER_BYTES
                <= length
                <= min(RECORD_BODY_BYTES_MAX, end - piece_start - kind_at)
            ):
                kind, _, _, stream_length, metadata_length = SNAPSHOT_HEADER.unpack_from(
                    piece, kind_at
                )
                mac_bytes = SNAPSHOT_MAC_BYTES if kind == KIND_KEYED_SNAPSHOT else 0
                if SNAPSHOT_HEADER_BYTES + stream_length + metadata_length + mac_bytes <= length:
                    budget -= length
                    if budget < 0:
                        return True
                    body: bytes | memoryview = view[kind_at : kind_at + length]
                    if len(body) < length:  # Longer than the piece: read on its own.
                        body = os.pread(fd, length, piece_start + kind_at)
                    prefix = crc32(view[kind_at - FRAME_BYTES : kind_at - FRAME_BYTES + 4])
                    if crc32(body, prefix) == crc:
                        return True
            candidate = _SNAPSHOT_KIND_BYTE.search(piece, kind_at + 1, stop)
        searched = piece_start + stop


def _next_data(fd: int, offset: int) -> int | None:
    """The first offset at or after ``offset`` that is not in a hole of the file (``offset``
    itself where the file system cannot say), or None when only holes follow."""
    if _SEEK_DATA is None:
        return offset
    try:
        return os.lseek(fd, offset, _SEEK_DATA)
    except OSError as error:
        if error.errno == errno.ENXIO:
            return None
        return offset  # Not offered here: the whole file counts as data.
