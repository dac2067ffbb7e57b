"""How a FileJournal's event loop reaches its snapshot store, whose calls block.

A save (and a compaction of the file, which takes a save's turn) runs in a worker thread that
its caller may stop waiting for (a cancelled caller, a runtime shutting down within its bound):
a sync stalled in the disk must not hold them up. So
the thread is abandoned on cancellation and goes on alone, and everything that must follow the
save is done by the thread itself, not by the waiting task:

- a failed write fails the journal (fail-stop does not depend on anyone still waiting);
- the next save starts only once it has ended, so a disk that stalls keeps one save thread
  busy, not one more per cancelled caller;
- a save cancelled before its thread began is ended by its caller (the thread, if it still
  runs, then does nothing), so a later save never waits for one that never runs.

Loads have a worker thread of their own, so a stalled save does not hold up activations that
only read; a cancelled caller stops waiting for its load at once, as for a save. A load of a
stream the store knows no snapshot of (at or below the version asked for) is answered on the
event loop's thread, from memory, without that thread. Closing the
journal waits for a save in progress (the store's lock) and for a load in progress (a lock of
the loads' own, so that loads do not wait for saves); a load after the close raises
``JournalClosed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ._exceptions import JournalClosed, JournalCorrupted, SnapshotCompactionFailed
from ._file_snapshots import SnapshotStore
from ._snapshot_compaction import SnapshotCompaction
from ._types import Snapshot

logger = logging.getLogger("journals.file")


class SnapshotIO:
    """Saves one at a time (each in a thread that outlives a cancelled caller), and loads."""

    def __init__(self, store: SnapshotStore, *, compacts_after_saves: bool) -> None:
        self._store = store
        self._compacts_after_saves = compacts_after_saves
        self._save_limiter = anyio.CapacityLimiter(1)
        self._load_limiter = anyio.CapacityLimiter(1)
        self._saving: anyio.Event | None = None  # Set when the save in progress has ended.

    async def save(
        self,
        stream_id: str,
        version: int,
        metadata: bytes,
        data: bytes,
        failed: Callable[[OSError], None],
        check: Callable[[], object],
        compaction_failed: Callable[[OSError], None],
    ) -> None:
        """Store one encoded snapshot; ``failed(error)`` is called on the event loop, from the
        save's thread, when the write fails (whether or not the caller still waits). Raises
        that ``OSError`` to a caller that waited. ``check()`` runs once the save before this
        one has ended, just before this one begins, and raises if the journal may no longer
        write: that save may have failed it, or the journal was closed meanwhile.

        Once the snapshot is durable, the same thread compacts the file if it grew enough
        and the compaction is worth it (``compact_after_save``), unless this ``SnapshotIO``
        was made with ``compacts_after_saves=False``; what comes of that never changes the
        save's answer. ``compaction_failed(error)`` is called as ``failed`` is, for a failed
        rename or directory sync of the compacted file."""
        store = self._store
        compacts = self._compacts_after_saves

        def save() -> None:
            store.save(stream_id, version, time.time_ns(), metadata, data)
            if compacts and store.compaction_due():
                compact_after_save(store, compaction_failed)

        await self._one_at_a_time(save, failed, check)

    async def compact(
        self, failed: Callable[[OSError], None], check: Callable[[], object]
    ) -> SnapshotCompaction:
        """Compact the snapshot file in the saves' thread, in turn with them (as a save is:
        ``failed`` and ``check`` as for ``save``). ``failed`` is called only for a failed
        rename or directory sync; a failure before the rename raises
        ``SnapshotCompactionFailed`` and fails nothing."""
        done: list[SnapshotCompaction] = []
        store = self._store

        def compact() -> None:
            compaction = store.compact()
            assert compaction is not None  # Only a compaction that may skip answers None.
            done.append(compaction)

        await self._one_at_a_time(compact, failed, check)
        return done[0]

    async def _one_at_a_time(
        self,
        call: Callable[[], None],
        failed: Callable[[OSError], None],
        check: Callable[[], object],
    ) -> None:
        while (saving := self._saving) is not None:
            await saving.wait()  # A save whose caller left may still be running.
        check()
        ended = self._saving = anyio.Event()
        claim = _Claim()

        def run() -> None:
            if not claim.take():
                return  # The caller was cancelled before this began; it ended the save.
            try:
                call()
            except OSError as error:
                with contextlib.suppress(RuntimeError):  # The event loop is gone: so is use.
                    anyio.from_thread.run_sync(failed, error)
                raise
            finally:
                with contextlib.suppress(RuntimeError):
                    anyio.from_thread.run_sync(self._ended, ended)

        try:
            await anyio.to_thread.run_sync(run, limiter=self._save_limiter, abandon_on_cancel=True)
        except BaseException:
            # Cancelled before the thread began (at the first checkpoint, or waiting for
            # the limiter): the thread will never end this save, so end it here, or every
            # later save would wait for it forever. Once begun, the thread ends it.
            if claim.take():
                self._ended(ended)
            raise

    def _ended(self, ended: anyio.Event) -> None:
        if self._saving is ended:
            self._saving = None
        ended.set()

    async def load(self, stream_id: str, max_version: int | None) -> Snapshot | None:
        if not self._store.holds(stream_id, max_version):
            # Answered on the loop's thread: most streams have no snapshot, and activating
            # one of them would otherwise cost a worker thread's round trip for nothing.
            return None
        # Abandoned by a cancelled caller (waited for, the cancellation came only after the
        # load, if ever): closing the store waits for a load in progress, not the caller.
        snapshot: Snapshot | None = await anyio.to_thread.run_sync(
            self._store.load,
            stream_id,
            max_version,
            limiter=self._load_limiter,
            abandon_on_cancel=True,
        )
        return snapshot

    async def load_matching(
        self, stream_id: str, metadata: Mapping[str, Any], max_version: int | None
    ) -> Snapshot | None:
        if not self._store.holds(stream_id, max_version):
            return None  # On the loop's thread, as ``load`` answers it.
        # In one thread for all the snapshots it reads, abandoned as a load is.
        snapshot: Snapshot | None = await anyio.to_thread.run_sync(
            self._store.load_matching,
            stream_id,
            metadata,
            max_version,
            limiter=self._load_limiter,
            abandon_on_cancel=True,
        )
        return snapshot


def compact_after_save(store: SnapshotStore, failed: Callable[[OSError], None]) -> None:
    """Compact the file in a save's thread, after the save, if it is worth it; never raise.

    The save is durable by then, and stays so whatever happens here: its snapshot is the
    newest of its stream, which every compaction keeps. A failure before the rename changes
    nothing and is logged once (the store looks again only once the file has grown as much
    again); a failed rename or directory sync fails the journal through ``failed`` (called
    on the event loop, whether or not the save's caller still waits), as ``compact_snapshots``
    does. Runs only in the save's thread (``anyio.from_thread`` needs one).
    """
    try:
        compaction = store.compact(only_if_worth=True)
    except SnapshotCompactionFailed as error:
        logger.warning("%s (it is tried again once the file has doubled)", error)
        return
    except JournalClosed:
        return  # Closed between the save and its compaction: the next open looks.
    except JournalCorrupted as error:
        logger.error("%s; it is tried again once the file has doubled", error)
        return
    except OSError as error:
        # Logged here, not by ``failed``, which does not run once the event loop is gone.
        log_fail_stop(os.path.dirname(store.path), compaction_failed(error))
        with contextlib.suppress(RuntimeError):  # The event loop is gone: so is use.
            anyio.from_thread.run_sync(failed, error)
        return
    if compaction is not None:
        log_compaction(store.path, compaction)


def log_compaction(path: str, compaction: SnapshotCompaction) -> None:
    """Log what a compaction that ran on its own (at open, after a save) did."""
    logger.info(
        "compacted %s: %d snapshots (%d bytes) down to %d (%d bytes)",
        path,
        compaction.snapshots_before,
        compaction.bytes_before,
        compaction.snapshots_after,
        compaction.bytes_after,
    )


def log_fail_stop(directory: str, message: str, *, already: bool = False) -> None:
    """Log a snapshot write, or a compacted file's rename, that failed the journal: once, at
    error level, naming the journal's directory, as a failed batch's write is logged.
    ``already``: the journal had failed before (a write under way failed after it), so this
    is no failure of the journal but a consequence of the one logged: at debug level."""
    if already:
        logger.debug("the journal in %s: %s (after the journal had failed)", directory, message)
    else:
        logger.error("the journal in %s failed (fail-stop): %s", directory, message)


def snapshot_failed(error: OSError) -> str:
    """What a failed snapshot write fails the journal with."""
    return (
        f"writing a snapshot failed ({error}); the journal accepts no more appends. Reopen it "
        f"to recover the durable prefix once the cause is fixed."
    )


def compaction_failed(error: OSError) -> str:
    """What a failed rename (or directory sync) of a compacted snapshot file fails the
    journal with."""
    return (
        f"replacing the snapshot file with its compacted copy failed ({error}), so which of "
        f"the two the directory holds is not known; the journal accepts no more appends. "
        f"Reopen it once the cause is fixed: either file is whole, and every acknowledged "
        f"event is kept."
    )


class _Claim:
    """Taken once, by whichever comes first: the save's thread beginning, or its caller's
    cancellation before that. The one that takes it ends the save in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> bool:
        with self._lock:
            taken, self._taken = self._taken, True
        return not taken
