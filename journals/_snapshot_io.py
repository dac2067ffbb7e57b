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
only read. Closing the journal waits for a save in progress (the store's lock) and for a load
in progress (a lock of the loads' own, so that loads do not wait for saves); a load after the
close raises ``JournalClosed``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.to_thread

from ._file_snapshots import SnapshotStore
from ._snapshot_compaction import SnapshotCompaction
from ._types import Snapshot


class SnapshotIO:
    """Saves one at a time (each in a thread that outlives a cancelled caller), and loads."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store
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
    ) -> None:
        """Store one encoded snapshot; ``failed(error)`` is called on the event loop, from the
        save's thread, when the write fails (whether or not the caller still waits). Raises
        that ``OSError`` to a caller that waited. ``check()`` runs once the save before this
        one has ended, just before this one begins, and raises if the journal may no longer
        write: that save may have failed it, or the journal was closed meanwhile."""
        store = self._store

        def save() -> None:
            store.save(stream_id, version, time.time_ns(), metadata, data)

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
        snapshot: Snapshot | None = await anyio.to_thread.run_sync(
            self._store.load, stream_id, max_version, limiter=self._load_limiter
        )
        return snapshot


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
