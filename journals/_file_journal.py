"""FileJournal: the durable journal on segment files, with group commit and recovery.

This module holds its opening and closing (their steps are in ``_file_lifecycle``), appends,
reads and statistics; its snapshot calls (save, load, compact) are ``SnapshotCalls``, in
``_file_journal_snapshots``.
"""

from __future__ import annotations

import functools
import operator
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from ._committer import CommitQueue, Waiter
from ._exceptions import (
    CLOSED_DURING_READ,
    NOT_OPEN,
    NOT_WRITABLE,
    JournalClosed,
    JournalFailed,
)
from ._file_encoding import (
    EncodedEvent,
    encode_columns,
    encode_events,
    encode_one,
    encode_stream_id,
    remembered_stream_id,
)
from ._file_handoff import open_in_thread
from ._file_journal_snapshots import SnapshotCalls
from ._file_lifecycle import check_enterable, close_journal, start_committer, stop_committer
from ._file_open import OpenedJournal, RecoveryReport, open_journal_files
from ._file_reader import (
    CACHED_READS,
    CachedReadsUnsupported,
    Columns,
    ReadWouldBlock,
    read_positions,
)
from ._file_thread import (
    BlockingRunner,
    CommitThread,
    ReaderThreads,
    commit_thread_kind,
    loop_checkpoint,
    make_runner,
)
from ._fileio import FileIO
from ._journal import Journal, QueuedAppend, StartedAppend
from ._opening_task import check_closing_task, opening_task
from ._snapshot_io import SnapshotIO
from ._types import (
    AppendResult,
    JournalStatistics,
    NewEvent,
    RecordedEvent,
    StreamChunk,
    recorded_event,
)
from ._validation import (
    check_expected_version,
    check_key,
    check_position_range,
    check_version_range,
    events_of_columns,
    journal_sizes,
    plain_str,
    switch,
)
from ._validation import stream_id_bytes as _stream_id_bytes

READ_CHUNK_EVENTS = 8192
"""The most events read per reader-thread hop; a long stream is never loaded whole."""
READ_CHUNK_BYTES = 2 * 1024 * 1024
"""About the most bytes of records read per hop (at least one event is read)."""
CACHED_READ_EVENTS = 256
"""Reads of at most this many events are tried on the loop's thread first, from the page cache."""
CACHED_READ_BYTES = 64 * 1024
"""About the most bytes one such read decodes on the loop's thread (a fraction of a ms)."""
READER_THREADS = 4
"""Threads that run reads; as many reads run at once."""


class FileJournal(SnapshotCalls, Journal):
    """A durable journal in a directory of segment files. See docs/journal-format.md.

    ::

        async with FileJournal("data/journal") as journal:
            await journal.append("order-7", [NewEvent("Placed", {"sku": "A1"})],
                                 expected_version=0)

    Appends from many tasks are committed together: one write and one fdatasync per batch, in a
    worker thread, and an append returns once its batch is durable. A failed write or fsync (or
    any error while committing) fails the journal (``JournalFailed``); reopening recovers the
    durable prefix. Opening cuts a torn tail (see ``recovery_report``) and refuses corrupted
    files (``JournalCorrupted``).

    Snapshots go to one file, ``snapshots.dat``, which is compacted (the snapshots no load
    needs dropped) on open and after a save that doubled it, when those hold at least 1 MiB
    and half the file (unless ``snapshot_compaction`` is ``False``), and on request with
    ``compact_snapshots()``. At most 128 segment files are kept open for reading, the most
    recently used.

    Options (keyword-only; a bad value raises ValueError here, before any file is touched; the
    switches ``durable``, ``cached_reads`` and ``snapshot_compaction`` take only ``True`` or
    ``False``):

    * ``segment_bytes_max``: roll to a new segment before a batch would make it larger; from
      4,096 bytes to 2 GiB (default 64 MiB).
    * ``batch_bytes_max``: a batch takes no more appends once it holds this many bytes (at
      most ``segment_bytes_max``; default 1 MiB), so its last append (at most 1 GiB) may
      take it past.
    * ``queue_bytes_max``: bytes of events waiting to be written (at least a batch; default
      8 MiB);
      ``append`` waits while it holds that many; a larger append goes in once it holds fewer.
    * ``key``: a secret for the hash chain (BLAKE2b keyed mode, up to 64 bytes); without it the
      chain (or a snapshot's MAC: one that does not hold is never loaded) cannot be recomputed,
      so it cannot be forged. Use random bytes (``secrets.token_bytes(32)``): the files let
      anyone test guesses of the key offline. Reopen with the same key: without one, opening a
      keyed journal raises ``JournalKeyMissing``; another key is refused as
      ``JournalCorrupted``, as a forged chain is. Whether a journal is keyed is fixed when it
      is created: a journal created without a key refuses one later (``JournalCorrupted``).
    * ``durable``: ``False`` skips every fsync. That mode is **not durable** (a crash can lose
      acknowledged appends); it exists to measure the CPU cost apart from the disk.
    * ``file_io``: the file layer; a test aid (``journals.testing.FaultyFileIO``) to inject
      faults. Leave it unset in production.
    * ``commit_thread``: where writes and fsyncs run: ``"dedicated"`` (one writer thread, the
      faster by measurement) or ``"pool"`` (anyio's worker threads); for benchmarks.
    * ``cached_reads``: short reads whose bytes are in the page cache run on the event loop's
      thread (Linux ``RWF_NOWAIT``: such a read never waits for the disk; anything else goes
      to a reader thread). ``False`` sends every read to a reader thread.
    * ``snapshot_compaction``: ``False`` never compacts the snapshot file on its own, at open
      or after saves; ``compact_snapshots()`` and ``eventfold compact`` still do. The file
      (and the time and memory opening takes) then grows with every snapshot saved until one
      of them runs: to compact in a maintenance window only, or to keep every snapshot.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes_max: int = 64 * 1024 * 1024,
        batch_bytes_max: int = 1024 * 1024,
        queue_bytes_max: int = 8 * 1024 * 1024,
        key: bytes | bytearray | memoryview | None = None,
        durable: bool = True,
        file_io: FileIO | None = None,
        commit_thread: CommitThread = "dedicated",
        cached_reads: bool = True,
        snapshot_compaction: bool = True,
    ) -> None:
        self._segment_bytes_max, self._batch_bytes_max, self._queue_bytes_max = journal_sizes(
            segment_bytes_max, batch_bytes_max, queue_bytes_max
        )
        self._key = check_key(key)
        self.path = os.fspath(path)
        self._durable = switch("durable", durable)
        self._file_io = file_io or FileIO()
        self._commit_thread = commit_thread_kind(commit_thread)
        self._runner: BlockingRunner | None = None
        self._opened: OpenedJournal | None = None
        self._queue: CommitQueue | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._opened_in: anyio.TaskInfo | None = None  # The task that may close it.
        self._entered = False
        self._closed = False
        self._snapshot_io: SnapshotIO | None = None
        self._readers: ReaderThreads | None = None
        self._cached_reads = switch("cached_reads", cached_reads) and CACHED_READS
        self._snapshot_compaction = switch("snapshot_compaction", snapshot_compaction)
        self._checkpoint: Callable[[], Awaitable[None]] = anyio.lowlevel.checkpoint
        self._cached_bytes = 0

    @property
    def recovery_report(self) -> RecoveryReport:
        """What opening found and did: segments, events, torn tails cut, indexes rebuilt."""
        if self._opened is None:
            raise JournalClosed("the journal has not been opened yet; use 'async with'")
        return self._opened.report

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        check_enterable(
            closed=self._closed, is_open=self._task_group is not None, entered=self._entered
        )
        self._entered = True
        # Recorded now: a close from another task while the opening is under way is refused,
        # and the opening goes on for this task to close the journal.
        self._opened_in = opening_task()
        try:
            await self._open()
        except BaseException:
            self._opened_in = None  # Not opened: nothing for any task to close.
            raise
        return self

    async def _open(self) -> None:
        opened = await open_in_thread(
            functools.partial(
                open_journal_files,
                self.path,
                self._file_io,
                key=self._key,
                durable=self._durable,
                snapshot_compaction=self._snapshot_compaction,
            ),
            self._file_io,
        )
        self._opened = opened
        self._snapshot_io = SnapshotIO(
            opened.snapshots, compacts_after_saves=self._snapshot_compaction
        )
        self._runner = make_runner(self._commit_thread)
        self._readers = ReaderThreads(READER_THREADS)
        self._checkpoint = loop_checkpoint()
        self._queue = CommitQueue(
            opened.index,
            opened.writer,
            opened.active_streams,
            opened.segment_files,
            self._runner,
            batch_bytes_max=self._batch_bytes_max,
            queue_bytes_max=self._queue_bytes_max,
            segment_bytes_max=self._segment_bytes_max,
        )
        self._task_group = await start_committer(self._queue, self._close_files)

    async def aclose(self) -> None:
        if self._closed:
            return
        # Before anything changes: refused, the journal stays open for its task to close.
        check_closing_task(self._opened_in, "FileJournal", opening=self._task_group is None)
        self._closed = True
        queue, task_group = self._queue, self._task_group
        if queue is None or task_group is None:
            return
        await stop_committer(queue, task_group, self._close_files)

    async def _close_files(self) -> None:
        if self._opened is not None:
            runner, self._runner = self._runner, None
            await close_journal(self._opened, self._file_io, runner, self._readers, self._queue)

    def _writable_queue(self) -> CommitQueue:
        queue = self._queue
        if queue is None or self._closed:
            raise JournalClosed(NOT_WRITABLE)
        if queue.failure is not None:
            kind, message, cause = queue.failure
            if kind is JournalClosed:  # The committer stopped: closed, not broken.
                raise JournalClosed(message)
            raise JournalFailed(
                f"the journal failed earlier and accepts no appends; reopen it to recover the "
                f"durable prefix. The failure: {message}"
            ) from cause
        return queue

    # -- writing ---------------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> AppendResult:
        started = self.start_append(stream_id, events, expected_version=expected_version)
        if started is None:
            # The queue is full: wait for room. The committer places waiting appends in
            # arrival order as room frees up, so the order fixed at call time still holds.
            queued = self._queue_append(stream_id, events, expected_version)
            del events
            try:
                await queued.wait()
            except BaseException:
                queued.withdraw()  # Not written, unless it was placed already.
                raise
            durable, batch, version, position = queued.started()
            del queued
            await durable
            batch.raise_error()
        else:
            durable, outcome, version, position = started
            del started, events
            await durable
            outcome.raise_error()
        return AppendResult(version, position)

    def start_append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> StartedAppend | None:
        queue = self._queue_with_room()
        if queue is None:
            return None
        stream_bytes = encode_stream_id(stream_id)
        return self._place_now(
            queue, stream_id, stream_bytes, encode_events(events), expected_version
        )

    def start_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> StartedAppend | None:
        queue = self._queue  # _queue_with_room, written out on the runtime's path
        if queue is None or self._closed or queue.failure is not None:
            queue = self._writable_queue()  # Raises the right error.
        if queue.waiters or queue.queued_bytes >= queue.queue_bytes_max:
            return None
        stream_bytes = remembered_stream_id(stream_id)
        one = (
            encode_one(types[0], data[0])
            if types.__class__ is list
            and len(types) == 1
            and data.__class__ is list
            and len(data) == 1
            else None
        )
        if one is None:
            encoded = encode_columns(types, data)
            return self._place_now(queue, stream_id, stream_bytes, encoded, expected_version)
        # One event of a known type (the runtime's usual append): placed in one call.
        if expected_version is not None and (
            expected_version.__class__ is not int or expected_version < 0
        ):
            check_expected_version(expected_version)
        return queue.place_one(
            stream_id, stream_bytes, one[0], one[1], time.time_ns(), expected_version
        )

    def queue_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> QueuedAppend:
        return self._queue_append(stream_id, events_of_columns(types, data), expected_version)

    def _queue_append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> Waiter:
        """Check and encode an append (raising what ``append`` raises) and queue it for room."""
        queue = self._writable_queue()
        stream_bytes = encode_stream_id(stream_id)
        encoded = encode_events(events)
        check_expected_version(expected_version)
        return queue.queue(
            functools.partial(
                queue.place, stream_id, stream_bytes, encoded, time.time_ns(), expected_version
            )
        )

    def _queue_with_room(self) -> CommitQueue | None:
        """The queue an append placed now goes to; None if it would have to wait for room
        (which only ``append`` does). Raises what a closed or failed journal raises."""
        queue = self._queue
        if queue is None or self._closed or queue.failure is not None:
            queue = self._writable_queue()  # Raises the right error.
        if queue.waiters or queue.queued_bytes >= queue.queue_bytes_max:
            return None
        return queue

    def _place_now(
        self,
        queue: CommitQueue,
        stream_id: str,
        stream_bytes: bytes,
        encoded: list[EncodedEvent],
        expected_version: int | None,
    ) -> StartedAppend:
        if expected_version is not None and (
            expected_version.__class__ is not int or expected_version < 0
        ):
            check_expected_version(expected_version)
        batch, version, position = queue.place(
            stream_id, stream_bytes, encoded, time.time_ns(), expected_version
        )
        return batch.done.wait(), batch, version, position

    # -- reading ---------------------------------------------------------------------------------

    def _readable(self) -> OpenedJournal:
        if self._opened is None or self._closed:
            raise JournalClosed(NOT_OPEN)
        return self._opened

    async def read(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        chunks = self.read_chunks(stream_id, from_version, to_version)
        try:
            async for chunk in chunks:
                for event in chunk.events():
                    yield event
        finally:
            # Closed now when the caller stops early, not whenever it is collected.
            await chunks.aclose()

    async def read_chunks(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        _stream_id_bytes(stream_id)
        check_version_range(from_version, to_version)
        opened = self._readable()
        positions = opened.index.streams.get(stream_id)
        if positions is None:
            return  # No such stream: no chunks.
        stream_id = plain_str(stream_id)  # As MemoryJournal hands it back (a StrEnum member).
        stop = len(positions) if to_version is None else min(to_version, len(positions))
        start = from_version - 1
        while start < stop:
            # The slice is taken before the read: the index array may grow meanwhile.
            wanted = positions[start : min(start + READ_CHUNK_EVENTS, stop)]
            columns = await self._read_columns(opened, wanted, stream_id, start + 1)
            yield columns.stream_chunk(stream_id, start + 1, wanted)
            start += len(columns.types)

    async def read_chunk(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> StreamChunk | None:
        try:
            check_version_range(from_version, to_version)
            opened = self._readable()
        except (ValueError, JournalClosed):
            _stream_id_bytes(stream_id)  # An invalid id is named first, as by every read.
            raise
        # A stream in the index had its id checked when it was appended to. Any str is looked up
        # (a StrEnum member finds its stream); isinstance costs a plain str what a type test did.
        positions = opened.index.streams.get(stream_id) if isinstance(stream_id, str) else None
        if positions is None:
            _stream_id_bytes(stream_id)  # Raises for an invalid id; a valid one has no events.
            return None
        stop = len(positions) if to_version is None else min(to_version, len(positions))
        if from_version > stop:
            return None
        if stream_id.__class__ is not str or from_version.__class__ is not int:
            # Handed back as plain values, as MemoryJournal does (a StrEnum id, an IntEnum).
            stream_id, from_version = plain_str(stream_id), operator.index(from_version)
        wanted = positions[from_version - 1 : min(from_version - 1 + READ_CHUNK_EVENTS, stop)]
        # _read_columns written out (one coroutine less): most reads of a replay are cached.
        columns = self._read_cached(opened, wanted, stream_id, from_version)
        if columns is None:
            columns = await self._read_in_thread(opened, wanted, stream_id, from_version)
        elif self._cached_bytes >= CACHED_READ_BYTES:
            self._cached_bytes = 0
            await self._checkpoint()
        return columns.stream_chunk(stream_id, from_version, wanted)

    async def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        check_position_range(from_position, to_position)
        opened = self._readable()
        position = from_position
        while True:
            # Re-read the head each chunk so a long read also sees events committed meanwhile.
            head = opened.index.head_position
            last = head if to_position is None else min(to_position, head)
            if position > last:
                return
            wanted = range(position, min(position + READ_CHUNK_EVENTS, last + 1))
            columns = await self._read_columns(opened, wanted)
            end = position + len(columns.types)
            for event in map(
                recorded_event,
                columns.streams,
                columns.versions,
                range(position, end),
                columns.types,
                columns.data,
                columns.metadata,
                columns.timestamps,
            ):
                yield event
            position = end

    async def _read_columns(
        self,
        opened: OpenedJournal,
        positions: Sequence[int],
        stream_id: str | None = None,
        first_version: int = 1,
    ) -> Columns:
        """Read the first of ``positions``: from the page cache on the loop's thread if it can
        (``_read_cached``), else in a reader thread, up to ``READ_CHUNK_BYTES``."""
        columns = self._read_cached(opened, positions, stream_id, first_version)
        if columns is None:
            return await self._read_in_thread(opened, positions, stream_id, first_version)
        # Yield to the loop once per CACHED_READ_BYTES read there, so a task that reads many
        # cached streams in a row holds the loop for a fraction of a ms at a time (yielding on
        # every short read cost ~10% of bringing them back).
        if self._cached_bytes >= CACHED_READ_BYTES:
            self._cached_bytes = 0
            await self._checkpoint()
        return columns

    def _read_cached(
        self, opened: OpenedJournal, positions: Sequence[int], stream_id: str | None, first: int
    ) -> Columns | None:
        """A short read from the page cache, on the loop's thread (it costs less than the hop
        to a reader thread and back; ``RWF_NOWAIT`` makes sure it never waits for the disk), or
        None: the read is long or not all cached. The caller yields to the loop once
        ``_cached_bytes`` reaches ``CACHED_READ_BYTES``."""
        if not self._cached_reads or len(positions) > CACHED_READ_EVENTS or self._closed:
            return None
        try:
            columns = read_positions(
                opened.index,
                opened.segment_files,
                positions,
                stream_id,
                first,
                CACHED_READ_BYTES,
                self._key,
                cached_only=True,
            )
        except CachedReadsUnsupported:
            self._cached_reads = False  # Not on this file system: threads from now on.
            return None
        except ReadWouldBlock:
            return None
        self._cached_bytes += columns.nbytes
        return columns

    async def _read_in_thread(
        self, opened: OpenedJournal, positions: Sequence[int], stream_id: str | None, first: int
    ) -> Columns:
        readers = self._readers
        if self._closed or readers is None:
            raise JournalClosed(CLOSED_DURING_READ)
        try:
            read: Columns = await readers.run(
                read_positions,
                opened.index,
                opened.segment_files,
                positions,
                stream_id,
                first,
                READ_CHUNK_BYTES,
                self._key,
            )
        finally:
            # Close what the read's thread retired, if anything, also after a failed or a
            # cancelled read (a file the read still uses stays open until the next one).
            opened.segment_files.collect()
        return read

    async def stream_version(self, stream_id: str) -> int:
        # As read_chunk does: an id found in the index was checked when it was appended to.
        opened = self._opened
        positions = None
        if opened is not None and not self._closed and isinstance(stream_id, str):
            positions = opened.index.streams.get(stream_id)
        if positions is None:
            _stream_id_bytes(stream_id)
            return self._readable().index.version(stream_id)
        return len(positions)

    async def head_position(self) -> int:
        return self._readable().index.head_position

    def statistics(self) -> JournalStatistics:
        opened, queue = self._opened, self._queue
        if opened is None or queue is None:
            return JournalStatistics(0, 0, 0, 0, 0, 0, 0, 0, 0)
        index = opened.index
        return JournalStatistics(
            streams=len(index.streams),
            events=index.head_position,
            head_position=index.head_position,
            appends=queue.committed_appends,
            appended_events=queue.committed_events,
            batches=queue.committed_batches,
            fsyncs=opened.writer.fsyncs + opened.snapshots.fsyncs,
            bytes_written=opened.writer.bytes_written,
            index_bytes=index.nbytes(),
            batch_fsyncs=opened.writer.batch_fsyncs,
            batch_sync_s=opened.writer.batch_sync_s,
        )
