"""Snapshots of a FileJournal: one file of framed, checksummed records, to which saves append
and which a compaction replaces with the snapshots kept (``_snapshot_compaction`` writes the
new file, ``_snapshot_retention`` decides what it keeps).

``SnapshotStore`` methods block (file I/O); the journal calls them in a worker thread.

A keyed journal's store writes keyed records (kind 4, ending with a MAC) and uses no other: a
record whose MAC does not hold, or that has none, is not indexed when the file is read (a
snapshot is a cache: its stream is replayed from its events instead), and one that a load
finds so (rewritten while the journal is open) is refused as damage. An unkeyed journal's
store writes and uses records of kind 3 only, as before keyed ones existed.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import operator
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from ._codec import (
    SNAPSHOT_FILE_HEADER_BYTES,
    SNAPSHOT_MAC_INVALID,
    SNAPSHOT_MAC_NONE,
    SNAPSHOT_MAC_VALID,
    RecordError,
    SnapshotFields,
    decode_snapshot,
    encode_snapshot,
    encode_snapshot_file_header,
    read_frame,
    snapshot_unusable,
)
from ._codec import crc32 as crc32
from ._encoding import decode_data, decode_metadata
from ._exceptions import JournalClosed, JournalCorrupted, JournalFailed, SnapshotCompactionFailed
from ._fileio import FileIO, not_a_file
from ._recovery import TornTail
from ._snapshot_compaction import BeforeRename, Kept, SnapshotCompaction, write_compacted
from ._snapshot_retention import grown_enough, retained, worth_compacting
from ._snapshot_scan import scan_snapshot_file
from ._types import Snapshot
from ._validation import metadata_holds

SNAPSHOT_FILE_NAME = "snapshots.dat"

logger = logging.getLogger("journals.file")


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    offset: int
    length: int


@dataclass(slots=True)
class UnusedSnapshots:
    """Snapshot records read from the file and not used, for one reason: how many, where the
    first is. ``forged``: their MAC does not hold (damage), rather than missing or uncheckable."""

    reason: str
    count: int
    offset: int
    forged: bool

    def counted(self) -> str:
        """``1 snapshot record``, ``2 snapshot records``: how many, in words."""
        return f"{self.count} snapshot record" + ("" if self.count == 1 else "s")


_version = operator.attrgetter("version")


class SnapshotStore:
    """Where each stream's snapshots are in the snapshot file, sorted by version."""

    def __init__(
        self,
        file_io: FileIO,
        path: str,
        fd: int,
        size: int,
        *,
        durable: bool,
        key: bytes | None = None,
    ) -> None:
        self._io = file_io
        self.path = path
        self._fd = fd
        self._size = size
        self._durable = durable
        self._key = key
        # What a record's MAC must be for the store to use it (``_codec.snapshot_unusable``).
        self._usable_mac = SNAPSHOT_MAC_NONE if key is None else SNAPSHOT_MAC_VALID
        self._entries: dict[str, list[_Entry]] = {}
        # Records the file was read with and that are not used, by what came of their MAC.
        self.unused: dict[str, UnusedSnapshots] = {}
        self._lock = threading.Lock()  # Held by a save; closing waits for it.
        # Held by a load while it reads the file; closing waits for it too, so a load never
        # reads a closed file descriptor (or one whose number was reused meanwhile).
        self._read_lock = threading.Lock()
        self._failure: OSError | None = None  # Invariant: once set, nothing more is written.
        # The file's size when its snapshots were last looked over for a compaction (when it
        # was opened, compacted, or found not worth compacting): ``compaction_due`` compares.
        self._looked_at_size = size
        self.fsyncs = 0

    @classmethod
    def read(
        cls, file_io: FileIO, directory: str, *, durable: bool, key: bytes | None = None
    ) -> tuple[SnapshotStore, TornTail | None]:
        """Read and check the snapshot file without changing it; ``make_writable`` then opens it.
        ``key``: the journal's, if it is keyed (the records it does not use are in ``unused``).

        Raises ``JournalCorrupted`` for damage; answers the torn tail that ``make_writable`` cuts.
        """
        path = os.path.join(directory, SNAPSHOT_FILE_NAME)
        kind = not_a_file(path)
        if kind is not None and kind != "nothing":
            # A link to nothing would have its target created elsewhere, a FIFO block the read.
            raise JournalCorrupted(path, 0, f"this is {kind} where the snapshot file belongs")
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, after the scan
        except FileNotFoundError:
            return cls(file_io, path, -1, 0, durable=durable, key=key), None
        except IsADirectoryError:
            raise JournalCorrupted(
                path, 0, "this is a directory where the snapshot file belongs"
            ) from None
        with file:
            try:
                return cls._scan(file_io, path, file.fileno(), durable=durable, key=key)
            except OSError as error:
                if error.filename is not None:
                    raise
                # A failing disk's EIO names the file, as a failing open does.
                raise OSError(error.errno, error.strerror, path) from None

    @classmethod
    def _scan(
        cls, file_io: FileIO, path: str, fd: int, *, durable: bool, key: bytes | None
    ) -> tuple[SnapshotStore, TornTail | None]:
        """``read`` of the file open at ``fd``: in pieces (``scan_snapshot_file``), never
        whole, as its size has no limit."""
        size = os.fstat(fd).st_size
        if size <= SNAPSHOT_FILE_HEADER_BYTES:
            torn_header = torn_creation(os.pread(fd, size, 0))
            if torn_header is not None:
                # Nothing was ever written after the header: make_writable writes it again.
                return cls(file_io, path, -1, 0, durable=durable, key=key), TornTail(
                    path, 0, size, torn_header
                )
        store = cls(file_io, path, -1, size, durable=durable, key=key)
        if size:
            store._size, tail = scan_snapshot_file(fd, size, path, store._found, key)
            store._looked_at_size = store._size
            return store, tail
        return store, None

    def check_versions(self, stream_versions: Mapping[str, Any]) -> None:
        """Refuse a snapshot taken at a version above its stream's last durable event.

        ``stream_versions`` maps a stream id to its positions (one per version). A snapshot is
        only ever saved at a durable version, so one above it means events it covers are lost.
        """
        for stream_id, entries in self._entries.items():
            positions = stream_versions.get(stream_id)
            version = 0 if positions is None else len(positions)
            latest = entries[-1]
            if latest.version > version:
                raise JournalCorrupted(
                    self.path,
                    latest.offset,
                    f"snapshot of stream {stream_id!r} at version {latest.version}, but the "
                    f"stream's events end at version {version}: events the snapshot covers are "
                    f"missing (a lost or cut segment?)",
                )

    def make_writable(self, directory: str, tail: TornTail | None) -> None:
        """Open the file for appends: write the header of a new file (or of one whose
        creation a crash cut short), cut the torn tail."""
        file_io = self._io
        fd = file_io.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if self._size == 0:
                file_io.pwrite_all(fd, encode_snapshot_file_header(), 0)
                if self._durable:
                    file_io.fsync(fd)
                    file_io.fsync_directory(directory)
                self._size = SNAPSHOT_FILE_HEADER_BYTES
            elif tail is not None:
                file_io.ftruncate(fd, tail.offset)
                if self._durable:
                    file_io.fsync(fd)
                self._size = tail.offset
        except BaseException:
            file_io.close(fd)
            raise
        self._fd = fd
        self._looked_at_size = self._size

    def _found(self, stream_id: str, version: int, offset: int, length: int, mac: str) -> None:
        """Remember a record the file was found to hold (``scan_snapshot_file``): ``_remember``
        while no load runs, its usual case (a newer version of the stream) written out; or
        count it in ``unused`` if this store may not use it."""
        if mac != self._usable_mac:
            unused = self.unused.get(mac)
            if unused is None:
                reason = snapshot_unusable(
                    SnapshotFields(version, 0, stream_id, b"", b"", mac), self._key
                )
                assert reason is not None
                self.unused[mac] = UnusedSnapshots(reason, 1, offset, mac == SNAPSHOT_MAC_INVALID)
            else:
                unused.count += 1
            return
        entry = _Entry(version, offset, length)
        entries = self._entries.get(stream_id)
        if entries is not None and entries[-1].version <= version:
            entries.append(entry)
        else:
            self._remember(stream_id, entry, loads_may_run=False)

    def _remember(self, stream_id: str, entry: _Entry, *, loads_may_run: bool = True) -> None:
        """Add ``entry`` to the stream's entries, kept in version order.

        While loads may run (in another thread: they do not wait for a save, which may be
        stalled in the disk), the stream's list is replaced, never changed under them. A
        snapshot usually comes after the stream's others (the file is read in order, and the
        runtime saves newer versions), so it is appended, not searched for.
        """
        entries = self._entries.get(stream_id)
        if entries is None:
            self._entries[stream_id] = [entry]
        elif entries[-1].version <= entry.version:
            if loads_may_run:
                self._entries[stream_id] = [*entries, entry]
            else:
                entries.append(entry)
        else:
            index = bisect.bisect_right(entries, entry.version, key=_version)
            self._entries[stream_id] = [*entries[:index], entry, *entries[index:]]

    def save(
        self, stream_id: str, version: int, timestamp_ns: int, metadata: bytes, data: bytes
    ) -> None:
        """Append one snapshot record and sync it. Fail-stop: after a write or sync failed,
        every later save raises ``JournalFailed`` (a failed fsync is never retried: the kernel
        may have dropped the pages it failed to write, and a later fsync would then succeed
        without them)."""
        record = encode_snapshot(
            version, timestamp_ns, stream_id.encode("utf-8"), metadata, data, self._key
        )
        with self._lock:
            self._check_writable("the snapshot was written")
            offset = self._size
            try:
                self._io.pwrite_all(self._fd, record, offset)
                if self._durable:
                    self._io.fdatasync(self._fd)
            except OSError as error:
                self._failure = error
                raise
            if self._durable:
                self.fsyncs += 1
            self._size = offset + len(record)
            self._remember(stream_id, _Entry(version, offset, len(record)))

    def holds(self, stream_id: str, max_version: int | None) -> bool:
        """Whether a snapshot of the stream at or below ``max_version`` (any if None) is known.

        From memory, without I/O or a lock: callable on the event loop's thread while a save or
        a compaction runs in another, since those replace a stream's list of entries (or all of
        them) and never change one in place while loads may run (``_remember``). A snapshot
        whose save has returned is known; one still being saved may or may not be."""
        return _find(self._entries.get(stream_id, ()), max_version) is not None

    def _require_open(self) -> None:
        """Raise ``JournalClosed`` once the store was closed (called under the read lock)."""
        if self._fd < 0:
            raise JournalClosed(
                "the journal was closed before the snapshot was read; loading "
                "snapshots needs the journal open"
            )

    def load(self, stream_id: str, max_version: int | None) -> Snapshot | None:
        """The latest snapshot of the stream at or below ``max_version`` (any if None).

        Does not wait for a save in progress (which may be stalled in the disk); raises
        ``JournalClosed`` once the store was closed."""
        if not self.holds(stream_id, max_version):
            return None
        with self._read_lock:
            self._require_open()
            # Looked up again under the lock: a compaction may have replaced the file (and
            # every offset) since, and it swaps them only while holding this lock.
            entry = _find(self._entries.get(stream_id, ()), max_version)
            if entry is None:
                return None
            raw = self._io.pread(self._fd, entry.length, entry.offset)
        return self._decode(stream_id, entry, raw)

    def load_matching(
        self, stream_id: str, metadata: Mapping[str, Any], max_version: int | None
    ) -> Snapshot | None:
        """The latest snapshot of the stream at or below ``max_version`` (any if None) whose
        metadata holds every item of ``metadata``: of each version, the last saved (the one
        ``load`` answers). Reads the snapshots from the newest down, each one's data decoded
        only if its metadata matches. As ``load``, it does not wait for a save."""
        if not self.holds(stream_id, max_version):
            return None
        with self._read_lock:
            self._require_open()
            looked_at = None  # The version of the last snapshot read.
            for entry in reversed(self._entries.get(stream_id, ())):
                version = entry.version
                if (max_version is not None and version > max_version) or version == looked_at:
                    continue  # Above the bound, or saved before the one a load answers there.
                looked_at = version
                raw = self._io.pread(self._fd, entry.length, entry.offset)
                snapshot = self._decode(stream_id, entry, raw, metadata)
                if snapshot is not None:
                    return snapshot
        return None

    def _check_writable(self, what: str) -> None:
        if self._fd < 0:
            raise JournalClosed(f"the journal was closed before {what}")
        if self._failure is not None:
            raise JournalFailed(
                f"an earlier write to {self.path} failed ({self._failure}); no more "
                f"snapshots are written. Reopen the journal to recover the durable prefix "
                f"once the cause is fixed."
            ) from self._failure

    def compaction_due(self) -> bool:
        """Whether the file grew enough since its snapshots were last looked over to look
        again (``_snapshot_retention.grown_enough``): two comparisons, made after each save."""
        return grown_enough(self._size, self._looked_at_size)

    def compact(self, *, only_if_worth: bool = False) -> SnapshotCompaction | None:
        """Rewrite the file with the snapshots ``_snapshot_retention.retained`` keeps.

        Holds the save lock throughout (no save runs meanwhile; loads go on reading the old
        file) and swaps the file under the load lock. Answers what it did; None when
        ``only_if_worth`` and the snapshots it would drop are too few to be worth a rewrite.
        Raises ``SnapshotCompactionFailed`` for a failure before the rename (nothing changed),
        and the ``OSError`` of a failed rename or directory sync, after which the store is
        failed like after a failed save: which file the name holds is not known.
        """
        with self._lock:
            self._check_writable("the snapshot file was compacted")
            try:
                return self._compact(only_if_worth=only_if_worth)
            finally:
                # Whatever came of it, the next look waits for the file to grow again: a
                # compaction that failed before its rename is not tried again at every save.
                self._looked_at_size = self._size

    def _compact(self, *, only_if_worth: bool) -> SnapshotCompaction | None:
        """The compaction itself; the caller holds the save lock."""
        chosen: list[tuple[_Entry, str]] = []
        # Records not used are never kept: a compaction removes them.
        before = sum(unused.count for unused in self.unused.values())
        for stream_id, entries in self._entries.items():
            before += len(entries)
            versions = [entry.version for entry in entries]
            chosen.extend((entries[index], stream_id) for index in retained(versions))
        chosen.sort(key=lambda pair: pair[0].offset)
        live = SNAPSHOT_FILE_HEADER_BYTES + sum(entry.length for entry, _ in chosen)
        if only_if_worth and not worth_compacting(self._size - live, self._size):
            return None
        if len(chosen) == before:
            return SnapshotCompaction(before, before, self._size, self._size)
        kept = [Kept(entry.offset, entry.length) for entry, _ in chosen]
        try:
            fd, offsets = write_compacted(
                self._io, self.path, self._fd, kept, durable=self._durable
            )
        except BeforeRename as failure:
            raise SnapshotCompactionFailed(
                f"compacting {self.path} failed before the new file replaced it "
                f"({failure.error}); the journal goes on with the old file, unchanged. "
                f"Compact again once the cause (a full disk?) is fixed."
            ) from failure.error
        except OSError as error:
            self._failure = error
            raise
        replaced: dict[str, list[_Entry]] = {}
        for (entry, stream_id), offset in zip(chosen, offsets, strict=True):
            replaced.setdefault(stream_id, []).append(_Entry(entry.version, offset, entry.length))
        for entries in replaced.values():
            entries.sort(key=_version)
        size = self._size
        with self._read_lock:
            old_fd, self._fd = self._fd, fd
            self._entries = replaced
            self._size = live
        self.unused = {}
        if self._durable:
            self.fsyncs += 2
        # The compaction is done: the new file is durable and in use, the old one is read no
        # more. close(2) frees the descriptor even when it reports an error, and that error
        # says nothing about the new file, so it must not fail the journal as a failed rename
        # does (or fail an open that compacted).
        with contextlib.suppress(OSError):
            self._io.close(old_fd)
        return SnapshotCompaction(before, len(chosen), size, live)

    @overload
    def _decode(self, stream_id: str, entry: _Entry, raw: bytes) -> Snapshot: ...
    @overload
    def _decode(
        self, stream_id: str, entry: _Entry, raw: bytes, wanted: Mapping[str, Any]
    ) -> Snapshot | None: ...
    def _decode(
        self, stream_id: str, entry: _Entry, raw: bytes, wanted: Mapping[str, Any] | None = None
    ) -> Snapshot | None:
        """The snapshot record ``raw`` read at ``entry``, checked; None when ``wanted`` is given
        and its metadata does not hold it (its data is then not decoded)."""
        try:
            start, end = read_frame(raw, 0)
            fields = decode_snapshot(raw[start:end], self._key)
            if fields.mac != self._usable_mac:  # Rewritten since the file was read.
                raise RecordError(str(snapshot_unusable(fields, self._key)))
            if (fields.stream_id, fields.version) != (stream_id, entry.version):
                raise RecordError("the snapshot record is not the one indexed here")
            metadata = decode_metadata(fields.metadata)
            if wanted is not None and not metadata_holds(metadata, wanted):
                return None
            return Snapshot(
                fields.stream_id,  # The plain str, also when a str subclass was asked for.
                fields.version,
                decode_data(fields.data),
                metadata,
                fields.timestamp_ns,
            )
        except RecordError as error:
            raise JournalCorrupted(self.path, entry.offset, str(error), during="read") from None
        except ValueError as error:  # orjson.JSONDecodeError: valid frame, not JSON.
            raise JournalCorrupted(
                self.path,
                entry.offset,
                f"snapshot data or metadata is not valid JSON ({error})",
                during="read",
            ) from None

    def sync_kept(self) -> None:
        """Sync the snapshots opening kept, once ``make_writable`` opened the file: after a
        crash, the last of them may be whole in the page cache and never synced."""
        if self._size > SNAPSHOT_FILE_HEADER_BYTES:
            self._io.fdatasync(self._fd)

    @property
    def size(self) -> int:
        """The bytes of the file read or written so far (what it holds but a torn tail)."""
        return self._size

    def close(self) -> int | None:
        """Close the file once a save and a load in progress have ended; answer its size if it
        holds exactly what was written to it and its close reported no error (a clean close
        records that size), else None. Never raises: the journal's close goes on."""
        with self._lock, self._read_lock:
            if self._fd < 0:
                return None
            fd, self._fd = self._fd, -1
            try:
                on_disk = os.fstat(fd).st_size
            except OSError:
                on_disk = None
            try:
                self._io.close(fd)
            except OSError as error:
                # close(2) frees the descriptor even when it reports an error: the journal's
                # close goes on (to the segments and the lock, or this process could never
                # open the journal again), without a clean-close record vouching for the file.
                logger.warning(
                    "closing %s reported an error (%r); the next open checks its end as "
                    "after a crash",
                    self.path,
                    error,
                )
                return None
            if self._failure is not None:
                return None
            return self._size if on_disk == self._size else None


def torn_creation(data: bytes) -> str | None:
    """Why the snapshot file's bytes ``data`` are what a crash while creating it leaves, or None.

    The file's header is the first thing written to it, and the same 16 bytes in every
    snapshot file; records follow only once it was synced. So a crash while it is written can
    leave part of it (a write cut short), or zeros where it belongs (a file system that stored
    the file's new size before its data), and never a record: nothing acknowledged is lost by
    writing the header again. Anything else shorter than a header is not a crash's leftover.
    """
    if not data or len(data) > SNAPSHOT_FILE_HEADER_BYTES:
        return None
    if not data.strip(b"\0"):
        return f"snapshot file of {len(data)} zero bytes, where its header belongs"
    if len(data) < SNAPSHOT_FILE_HEADER_BYTES and _FILE_HEADER.startswith(data):
        return (
            f"incomplete snapshot file header ({len(data)} of {SNAPSHOT_FILE_HEADER_BYTES} bytes)"
        )
    return None


def _find(entries: Sequence[_Entry], max_version: int | None) -> _Entry | None:
    """The newest of a stream's ``entries`` at or below ``max_version`` (any if None)."""
    for entry in reversed(entries):
        if max_version is None or entry.version <= max_version:
            return entry
    return None


_FILE_HEADER = encode_snapshot_file_header()
