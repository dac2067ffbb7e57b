"""Group commit: the bounded queue of batches and the one task that makes them durable.

Appends place their encoded frames into the open batch synchronously (so order is fixed at
call time) and wait on the batch's ``BatchDone``. The committer task takes the oldest batch,
writes it with one write and one fdatasync in a worker thread, publishes it to the index, and
wakes its appenders. Any error while it does so fails the journal (fail-stop; an error no
disk reported goes through ``_commit_failure``). While a batch is being written the next one
accumulates: no timer, no eager flush.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ._codec import (
    COMMIT_FRAME_BYTES,
    KIND_EVENT,
    LENGTH_CHECKSUMS,
    SMALL_RECORD_BYTES,
    crc32,
    encode_event,
    pack_event_header,
    pack_frame,
)
from ._commit_failure import failed_after_sync, unexpected_failure, unpublish
from ._exceptions import (
    ConcurrencyError,
    EventEncodingError,
    JournalClosed,
    JournalFailed,
    JournalFailedAfterSync,
)
from ._file_encoding import EncodedEvent
from ._file_thread import BlockingRunner, handoff_wait_s
from ._file_writer import RollPlan, SegmentWriter
from ._index import JournalIndex, SegmentIndex, encode_index_file
from ._segment_files import SegmentFiles
from ._validation import APPEND_BYTES_MAX, append_too_large
from ._wake import BatchDone, FuturesDone, WakePacing, done_factory, wake_appenders

logger = logging.getLogger("journals.file")

_COMMITTER_STOPPED = (
    "the journal is closed: its committer stopped when the task that opened it (with 'async "
    "with') was cancelled, so no append can be made durable; nothing of this append was "
    "written. Keep the journal open in a task that outlives every task that appends to it"
)
_STOPPED_WHILE_WRITTEN = (
    "the journal is closed: its committer stopped when the task that opened it (with 'async "
    "with') was cancelled, as this append's batch was being written, so it was not "
    "acknowledged and may or may not be on disk. Reopen the journal and read the stream's "
    "version before appending it again; keep the journal open in a task that outlives every "
    "task that appends to it"
)


class Batch:
    """Appends that commit together. Invariant: positions first..last are contiguous."""

    __slots__ = (
        "appends",
        "done",
        "error",
        "first_position",
        "frames",
        "nbytes",
        "run_firsts",
        "run_streams",
    )

    def __init__(self, first_position: int, done: BatchDone) -> None:
        self.frames: list[bytes] = []  # One per event, in position order.
        # Runs of consecutive appends to one stream: the stream and the first position of
        # each run (a run ends where the next begins). A hot stream's appends in one batch are
        # one run. Columns rather than a tuple per append: an array of ints is not an object
        # the cyclic GC tracks, and with thousands of appends waiting that is measurably
        # fewer passes.
        self.run_streams: list[str] = []
        self.run_firsts: array[int] = array("Q")
        self.first_position = first_position
        self.nbytes = 0
        self.appends = 0
        self.done = done
        self.error: tuple[type[Exception], str, BaseException | None] | None = None

    @property
    def last_position(self) -> int:
        return self.first_position + len(self.frames) - 1

    def raise_error(self) -> None:
        if self.error is not None:
            kind, message, cause = self.error
            raise kind(message) from cause

    def wait(self) -> Awaitable[None]:
        """Another wait for this batch (``AppendOutcome.wait``), woken after those before it."""
        return self.done.wait()


class Waiter:
    """An append waiting for room in the queue; the committer places it, in arrival order.

    The FileJournal's ``QueuedAppend``. ``ready`` is set once it is placed (``batch`` set)
    or refused (``error`` set); a withdrawn waiter has left ``waiters`` and is never set.
    """

    __slots__ = ("append", "batch", "error", "position", "ready", "version", "waiters")

    def __init__(
        self, append: Callable[[], tuple[Batch, int, int]], waiters: deque[Waiter]
    ) -> None:
        self.append = append
        self.waiters = waiters
        self.ready = anyio.Event()
        self.batch: Batch | None = None
        self.version = 0
        self.position = 0
        self.error: BaseException | None = None

    def wait(self) -> Awaitable[None]:
        return self.ready.wait()

    def started(self) -> tuple[Awaitable[None], Batch, int, int]:
        """The placed append as ``start_append`` answers it (call once), or its refusal."""
        if self.error is not None:
            raise self.error
        if self.batch is None:
            raise RuntimeError(
                "QueuedAppend.started() was called before the append was placed (or after it "
                "was withdrawn): await its wait() first, and call started() once that is done"
            )
        return self.batch.done.wait(), self.batch, self.version, self.position

    def withdraw(self) -> bool:
        """Leave the queue unless placed: whether the append will never be written. Again
        after a withdrawal it answers the same."""
        if not self.ready.is_set():
            with contextlib.suppress(ValueError):  # Withdrawn already.
                self.waiters.remove(self)
            return True
        return self.error is not None


class CommitQueue:
    """Loop-side state of group commit: tentative versions, batches, backpressure."""

    def __init__(
        self,
        index: JournalIndex,
        writer: SegmentWriter,
        active_streams: set[str],
        segment_files: SegmentFiles,
        runner: BlockingRunner,
        *,
        batch_bytes_max: int,
        queue_bytes_max: int,
        segment_bytes_max: int,
    ) -> None:
        self.index = index
        self.writer = writer
        self.active_streams = active_streams
        self.segment_files = segment_files
        self.runner = runner
        self.batch_bytes_max = batch_bytes_max
        self.queue_bytes_max = queue_bytes_max
        self.segment_bytes_max = segment_bytes_max
        self.batches: deque[Batch] = deque()
        self.in_flight: Batch | None = None
        self.waiters: deque[Waiter] = deque()
        self.tentative_versions: dict[str, int] = {}
        self.next_position = index.head_position + 1
        self.queued_bytes = 0
        self.closing = False
        # Why appends are refused, once they are: JournalFailed (fail-stop) or, once the
        # committer has stopped, JournalClosed. Appends check only this (and the journal's own
        # closed flag) on their fast path.
        self.failure: tuple[type[Exception], str, BaseException | None] | None = None
        self.wakeup = anyio.Event()
        self.make_done = done_factory()
        self.pacing = WakePacing()
        self.committed_batches = 0
        self.committed_events = 0
        self.committed_appends = 0

    # -- appender side (synchronous: runs before the append's first await) --------------------

    def place(
        self,
        stream_id: str,
        stream_bytes: bytes,
        encoded: list[EncodedEvent],
        timestamp_ns: int,
        expected_version: int | None,
    ) -> tuple[Batch, int, int]:
        """Take the append's place in the log; answer its batch, version and position.

        ``place_one`` is the same for one event without metadata, written out for the hot
        path (going through here cost the hot actor ~3 %): a change to one is a change to
        both, and a property test in tests/test_file_encoding.py holds them to the same bytes.
        """
        version = self.tentative_versions.get(stream_id)
        if version is None:
            durable = self.index.streams.get(stream_id)
            version = 0 if durable is None else len(durable)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        # The frames first, into a list of their own: the append's size, or anything else
        # that fails while they are made, refuses it before the batch or the versions change.
        position = self.next_position
        new_frames: list[bytes] = []
        added = 0
        for event_type, metadata, data in encoded:
            version += 1
            frame = encode_event(
                position, version, timestamp_ns, stream_bytes, event_type, metadata, data
            )
            new_frames.append(frame)
            added += len(frame)
            position += 1
        if added > APPEND_BYTES_MAX:  # One comparison per append, on the sum made anyway.
            raise append_too_large(added, len(encoded), APPEND_BYTES_MAX)
        # Invariant: from here on nothing can fail, so versions, positions and the batch move
        # together.
        batches = self.batches
        batch = batches[-1] if batches else None
        if batch is None or batch.nbytes >= self.batch_bytes_max:
            batch = Batch(self.next_position, self.make_done())
            batches.append(batch)
            if not self.wakeup.is_set():
                self.wakeup.set()
        run_streams = batch.run_streams
        if not run_streams or run_streams[-1] != stream_id:
            run_streams.append(stream_id)
            batch.run_firsts.append(self.next_position)
        batch.frames += new_frames
        self.tentative_versions[stream_id] = version
        self.next_position = position
        batch.nbytes += added
        self.queued_bytes += added
        batch.appends += 1
        return batch, version, position - 1

    def place_one(
        self,
        stream_id: str,
        stream_bytes: bytes,
        event_type: bytes,
        data: bytes,
        timestamp_ns: int,
        expected_version: int | None,
    ) -> tuple[Awaitable[None], Batch, int, int]:
        """``place`` for one event without metadata, the runtime's usual append (one event per
        command), in one call: the same checks, positions and frame, and the append's wait for
        durability (answered first). The frame and the wait are written out rather than called
        (``encode_event``, ``BatchDone.wait``): two calls fewer took ~3 % off a hot actor's
        time per command. One record is far below ``APPEND_BYTES_MAX``: no size check."""
        version = self.tentative_versions.get(stream_id)
        if version is None:
            durable = self.index.streams.get(stream_id)
            version = 0 if durable is None else len(durable)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        # The frame first: anything that fails while it is made refuses the append before the
        # batch or the versions change.
        position = self.next_position
        version += 1
        body = (
            pack_event_header(
                KIND_EVENT, position, version, timestamp_ns, len(stream_bytes), len(event_type), 0
            )
            + stream_bytes
            + event_type
            + data
        )
        length = len(body)
        if length < SMALL_RECORD_BYTES:
            frame = pack_frame(length, crc32(body, LENGTH_CHECKSUMS[length])) + body
        else:
            frame = encode_event(
                position, version, timestamp_ns, stream_bytes, event_type, b"", data
            )
        batches = self.batches
        batch = batches[-1] if batches else None
        if batch is None or batch.nbytes >= self.batch_bytes_max:
            batch = Batch(position, self.make_done())
            batches.append(batch)
            if not self.wakeup.is_set():
                self.wakeup.set()
        run_streams = batch.run_streams
        if not run_streams or run_streams[-1] != stream_id:
            run_streams.append(stream_id)
            batch.run_firsts.append(position)
        batch.frames.append(frame)
        self.tentative_versions[stream_id] = version
        self.next_position = position + 1
        added = len(frame)
        batch.nbytes += added
        self.queued_bytes += added
        batch.appends += 1
        done = batch.done
        waiter: Awaitable[None]
        if done.__class__ is FuturesDone:  # FuturesDone.wait; a queued batch is not finished
            waiter = done._create()
            done._waiters.append(waiter)
        else:
            waiter = done.wait()
        return waiter, batch, version, position

    def queue(self, append: Callable[[], tuple[Batch, int, int]]) -> Waiter:
        """Queue an append behind those waiting for room: placed at once if there is room."""
        waiter = Waiter(append, self.waiters)
        self.waiters.append(waiter)
        try:
            self._admit_waiters()
        except Exception as error:
            # Placing an append raised something unexpected (a placement changes nothing until
            # it cannot fail, but the error's cause is unknown): fail-stop, which answers this
            # waiter too.
            self._fail_unexpectedly(error)
        return waiter

    def settled(self) -> bool:
        """Whether the journal did not fail and no batch waits or is being written: then the
        files hold exactly the committed batches, which a clean close records (batches that a
        close discarded unwritten were never on disk; see ``_clean_close``)."""
        return not self.failed_stop() and self.in_flight is None and not self.batches

    def failed_stop(self) -> bool:
        """Whether the journal failed (fail-stop): a write that fails after that is a
        consequence of the failure already logged, not another one."""
        return self.failure is not None and self.failure[0] is JournalFailed

    # -- failure -------------------------------------------------------------------------------

    def fail(self, kind: type[Exception], message: str, cause: BaseException | None) -> None:
        """Fail every queued batch and waiter; with JournalFailed, every later append too."""
        error = (kind, message, cause)
        if kind is JournalFailed and (self.failure is None or self.failure[0] is not kind):
            self.failure = error  # Also after the committer stopped: a failure says more.
        failed = list(self.batches)
        if self.in_flight is not None:
            failed.insert(0, self.in_flight)
            self.in_flight = None
        self.batches.clear()
        for batch in failed:
            batch.error = error
            batch.done.set()
        while self.waiters:
            waiter = self.waiters.popleft()
            waiter.error = kind(message)
            waiter.error.__cause__ = cause
            waiter.ready.set()
        self.queued_bytes = 0

    # -- the committer task --------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while self.failure is None:
                if not self.batches:
                    if self.closing:
                        return
                    self.wakeup = anyio.Event()
                    await self.wakeup.wait()
                    continue
                await self._commit_next()
        except Exception as error:
            # Not a disk's error, and outside a batch's write (waking or placing appenders):
            # the journal fails as it would on one, rather than leave its appenders waiting.
            self._fail_unexpectedly(error)
        finally:
            if self.failure is None:
                # Nothing commits any more, however the committer stopped (a close, or the
                # task group that opened the journal was cancelled): refuse later appends
                # rather than queue them for no one.
                self.failure = (JournalClosed, _COMMITTER_STOPPED, None)
            if self.batches or self.waiters or self.in_flight is not None:
                self._fail_stopped()

    async def _commit_next(self) -> None:
        # The batch leaves the queue, so it is closed from here on: later appends start a new one.
        batch = self.in_flight = self.batches.popleft()
        # The writer's chain hash moves only once the batch's sync returned: how a failure
        # tells a durable batch from one that may not be.
        chain = self.writer.chain
        try:
            roll = self._roll_plan(batch)
            frames = batch.frames
            self.pacing.commit_starts(time.perf_counter())
            outcome = await self.runner.run(
                self.writer.commit,
                frames,
                batch.first_position,
                batch.last_position,
                roll,
                self.runner.entering_io,
                handoff_s=handoff_wait_s(batch.nbytes),
            )
        except OSError as error:
            if self.failed_stop():
                # A consequence of the failure already logged (a snapshot's write failed
                # while this batch was being written): not a second failure of the journal.
                logger.debug(
                    "journal write failed in %s (%r) after the journal had failed",
                    self.writer.directory,
                    error,
                )
                return
            logger.error(
                "journal write failed in %s (%r); the journal is failed (fail-stop): the "
                "appends not acknowledged and every later one fail with JournalFailed. Fix "
                "the cause (a full or failing disk), then reopen the journal: it recovers "
                "its durable prefix",
                self.writer.directory,
                error,
            )
            self.fail(
                JournalFailed,
                f"a write or fsync of the journal failed ({error}); this append was not "
                f"acknowledged and the journal accepts no more appends. Reopen it to recover "
                f"the durable prefix once the cause is fixed.",
                error,
            )
            return
        except Exception as error:
            synced = self.writer.chain is not chain and self.in_flight is batch
            self._fail_unexpectedly(error, batch if synced else None)
            return
        if self.in_flight is not batch:
            # The journal failed while the batch was being written (a snapshot's write failed
            # meanwhile): its appenders were answered with that failure, so it is not
            # published either, and no read, nor an actor rebuilt from reads, sees what was
            # answered as not acknowledged. Its bytes are on disk, as a failed append's may
            # be: reopening finds it. A segment the write began is closed with the journal.
            if outcome.new_segment is not None and outcome.new_read_fd is not None:
                segment = outcome.new_segment
                self.segment_files.add(segment.first_position, segment.path, outcome.new_read_fd)
            return
        self.in_flight = None
        self.queued_bytes -= batch.nbytes
        try:
            self._publish(batch, outcome.base_offset, outcome.new_segment, outcome.new_read_fd)
        except Exception as error:
            rolled = outcome.new_segment is not None
            try:
                unpublish(self.index, batch, outcome.base_offset, chain, rolled=rolled)
            finally:
                self._fail_unexpectedly(error, batch)
            return
        try:
            self.pacing.committed(outcome.seconds)
            await wake_appenders(batch.done, self.pacing, queued=bool(self.batches))
        except Exception:
            batch.done.set()  # Published: its appenders are answered, as committed.
            raise
        self._admit_waiters()

    def _fail_stopped(self) -> None:
        """Answer the appends the stopped committer leaves: the batch it was writing may be on
        disk; those queued behind it and those waiting for room were never written."""
        batch, self.in_flight = self.in_flight, None
        if batch is not None:
            batch.error = (JournalClosed, _STOPPED_WHILE_WRITTEN, None)
            batch.done.set()
        self.fail(JournalClosed, _COMMITTER_STOPPED, None)

    def _fail_unexpectedly(self, error: Exception, synced: Batch | None = None) -> None:
        """Fail the journal on an error that is not a disk's (see ``_commit_failure``).

        ``synced``: the batch that was made durable but not published; its appenders are told
        so (``JournalFailedAfterSync``). Every other batch and waiter fails as unwritten.
        """
        logger.error(
            "the committer of the journal in %s stopped on an unexpected error; the journal "
            "is failed (fail-stop): the appends not acknowledged and every later one fail with "
            "JournalFailed. It is a bug or an exhausted resource (report the traceback if it "
            "is a bug); reopen the journal to recover its durable prefix",
            self.writer.directory,
            exc_info=error,
        )
        if synced is not None:
            if self.in_flight is synced:
                self.in_flight = None
            message = failed_after_sync(error, durable=self.writer.durable)
            synced.error = (JournalFailedAfterSync, message, error)
            synced.done.set()
        self.fail(JournalFailed, unexpected_failure(error), error)

    def _roll_plan(self, batch: Batch) -> RollPlan | None:
        segment = self.writer.segment
        if not segment.offsets:
            return None
        if self.writer.size + batch.nbytes + COMMIT_FRAME_BYTES <= self.segment_bytes_max:
            return None
        streams: dict[bytes, array[int]] = {}
        for stream_id in self.active_streams:
            positions = self.index.streams[stream_id]
            start = bisect.bisect_left(positions, segment.first_position)
            # Its text: an id placed as a str subclass is kept as given (its encode aside).
            streams[str.encode(stream_id, "utf-8")] = positions[start:]
        return RollPlan(encode_index_file(segment, self.writer.size, streams), batch.first_position)

    def _publish(
        self, batch: Batch, base: int, new_segment: SegmentIndex | None, read_fd: int | None
    ) -> None:
        index = self.index
        if new_segment is not None:
            assert read_fd is not None
            self.segment_files.add(new_segment.first_position, new_segment.path, read_fd)
            index.add_segment(new_segment)
            self.active_streams = set()
        segment = index.segments[-1]
        frames = batch.frames
        # Each event's offset: the write's base plus the lengths of the frames before it.
        segment.offsets.extend(itertools.accumulate(map(len, frames[:-1]), initial=base))
        segment.commits.append(self.writer.size - COMMIT_FRAME_BYTES)
        segment.durable_end = self.writer.size
        segment.final_hash = self.writer.chain
        streams = index.streams
        active = self.active_streams
        tentative = self.tentative_versions
        run_firsts = batch.run_firsts
        ends = itertools.chain(itertools.islice(run_firsts, 1, None), (batch.last_position + 1,))
        for stream_id, first, end in zip(batch.run_streams, run_firsts, ends, strict=True):
            positions = streams.get(stream_id)
            if positions is None:
                positions = index.new_stream(stream_id)
            if end - first == 1:
                positions.append(first)
            else:
                positions.extend(range(first, end))
            active.add(stream_id)
            # The stream's version is now its count of positions: no append of it is still
            # in flight if that is the version its last placed append took.
            if tentative.get(stream_id) == len(positions):
                del tentative[stream_id]
        index.head_position = batch.last_position
        self.committed_batches += 1
        self.committed_appends += batch.appends
        self.committed_events += batch.last_position - batch.first_position + 1

    def _admit_waiters(self) -> None:
        while self.waiters and (self.queued_bytes < self.queue_bytes_max):
            waiter = self.waiters.popleft()
            try:
                waiter.batch, waiter.version, waiter.position = waiter.append()
            except (ConcurrencyError, EventEncodingError) as error:
                waiter.error = error
            except BaseException:
                self.waiters.appendleft(waiter)  # Still waiting: answered by the failure.
                raise
            waiter.ready.set()
