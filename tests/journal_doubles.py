"""Journals and file layers that hold back, gate or fail what passes through them.

Each double wraps a real implementation (``MemoryJournal``, the tests' ``ManualJournal``, or
the plain ``FileIO``) and changes one thing, so that a test can put the runtime or the
journal in the state it checks: when snapshot saves, snapshot loads, activations' reads,
appends' answers or file writes return, and which snapshot saves fail. Gates are
``anyio.Event``s set by the test; the file layer's are ``threading.Event``s, since its calls
run in the journal's threads.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from journals import AppendResult, Journal, JournalError, MemoryJournal, NewEvent
from journals._file_snapshots import SNAPSHOT_FILE_NAME
from journals.testing import FileIO

from .test_runtime_manual_journal import ManualJournal

# -- snapshot saves -------------------------------------------------------------------------


class HeldSnapshotSaves(Journal):
    """Holds every snapshot save until ``release`` is set; records the saves it stored, as
    ``(stream_id, version)``, in ``saved``. Mixed in before the journal that stores them."""

    def __init__(self, *arguments: Any, **options: Any) -> None:
        super().__init__(*arguments, **options)
        self.release = anyio.Event()
        self.saved: list[tuple[str, int]] = []

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        await self.release.wait()
        # The journal mixed in after this class stores it; Journal's own is abstract.
        await super().save_snapshot(stream_id, version, data, metadata)  # type: ignore[safe-super]
        self.saved.append((stream_id, version))


class HeldSnapshots(HeldSnapshotSaves, MemoryJournal):
    """A MemoryJournal whose snapshot saves wait for ``release`` (``HeldSnapshotSaves``) and
    whose snapshot loads, once ``loads`` is an event, answer only when it is set."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: anyio.Event | None = None

    async def load_snapshot(self, stream_id: str, max_version: int | None = None) -> Any:
        found = await super().load_snapshot(stream_id, max_version)
        if self.loads is not None:
            await self.loads.wait()
        return found


class GatedSnapshots(MemoryJournal):
    """Holds the save of a snapshot at ``(stream, version)`` until its gate in ``gates`` is
    set, and the activations of the streams in ``activations`` until theirs is; fails the
    saves listed in ``failures`` once each; records the saves it stored."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[tuple[str, int], anyio.Event] = {}
        self.activations: dict[str, anyio.Event] = {}
        self.failures: set[tuple[str, int]] = set()
        self.saved: list[tuple[str, int]] = []

    async def stream_version(self, stream_id: str) -> int:
        gate = self.activations.get(stream_id)
        if gate is not None:
            await gate.wait()
        return await super().stream_version(stream_id)

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        gate = self.gates.get((stream_id, version))
        if gate is not None:
            await gate.wait()
        if (stream_id, version) in self.failures:
            self.failures.remove((stream_id, version))
            # Not JournalFailed: a failed journal refuses everything after it (logged as
            # an error); this store refuses one snapshot and goes on.
            raise JournalError("the snapshot store failed (simulated)")
        await super().save_snapshot(stream_id, version, data, metadata)
        self.saved.append((stream_id, version))


# -- appends' answers -----------------------------------------------------------------------


class ReorderedAnswers(HeldSnapshotSaves, ManualJournal):
    """Answers an append (``Journal.append``: no order promised between appends) once the
    test sets its gate in ``answers``, if it has one; holds snapshot saves until ``release``
    (``HeldSnapshotSaves``)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[tuple[str, int], anyio.Event] = {}

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> AppendResult:
        result = await super().append(stream_id, events, expected_version=expected_version)
        gate = self.answers.get((stream_id, result.version))
        if gate is not None:
            await gate.wait()
        return result


# -- activations ----------------------------------------------------------------------------


class GatedActivations(MemoryJournal):
    """A MemoryJournal whose activations (their ``stream_version`` read) wait while ``gate``
    is an event not yet set; with ``gate`` None they go through."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: anyio.Event | None = None

    async def stream_version(self, stream_id: str) -> int:
        if self.gate is not None:
            await self.gate.wait()
        return await super().stream_version(stream_id)


class SlowActivations(GatedActivations):
    """A MemoryJournal whose activations wait until ``gate``, unset when it is made, is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: anyio.Event = anyio.Event()


# -- the file layer -------------------------------------------------------------------------


class HeldWrites(FileIO):
    """Writes wait while ``released`` is cleared (in the journal's writer thread); ``entered``
    is set once one waits."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.released.set()
        self.entered = threading.Event()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if not self.released.is_set():
            self.entered.set()
            self.released.wait()
        return super().pwrite(fd, data, offset)


class UnsyncedFileIO(FileIO):
    """The plain file layer without its syncs, for a journal that the test reads back in the
    same process (what a power cut left, or a journal filled only to be read): the bytes are
    the same either way, and its syncs need not wait for the disk."""

    def fdatasync(self, fd: int) -> None:
        pass

    def fsync(self, fd: int) -> None:
        pass


class SnapshotFileIO(FileIO):
    """A file layer that tells the descriptors open on the snapshot file (``snapshots.dat``)
    from the others, for doubles that act on that file's calls only. Mixed in before
    ``FaultyFileIO`` too."""

    def __init__(self) -> None:
        super().__init__()
        self._snapshot_fds: set[int] = set()

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if os.path.basename(path) == SNAPSHOT_FILE_NAME:
            self._snapshot_fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        # Forgotten once closed: the number may be given to another file next.
        self._snapshot_fds.discard(fd)
        super().close(fd)

    def on_snapshot_file(self, fd: int) -> bool:
        """Whether ``fd`` is open on the snapshot file."""
        return fd in self._snapshot_fds


STALL_LIMIT_S = 30.0
"""How long a stalled sync waits for the test at most (a test that forgets to release it)."""


class StallingSnapshots(SnapshotFileIO):
    """Holds every fdatasync of ``snapshots.dat`` while ``armed`` until ``release``, which lets
    it succeed or fail with EIO; the rest as the OS does."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = 0  # snapshot syncs begun while armed
        self.armed = True
        self.stalled = threading.Event()
        self._released = threading.Event()
        self._fail = False

    def fdatasync(self, fd: int) -> None:
        if self.on_snapshot_file(fd) and self.armed:
            self.entered += 1
            self.stalled.set()
            assert self._released.wait(STALL_LIMIT_S), "the test did not release the sync"
            if self._fail:
                raise OSError(errno.EIO, "Input/output error (simulated, after a stall)")
        super().fdatasync(fd)

    def release(self, *, fail: bool) -> None:
        self._fail = fail
        self._released.set()


async def until_stalled(file_io: StallingSnapshots) -> None:
    """Wait until a snapshot sync of ``file_io`` is held (10 s at most)."""
    assert await anyio.to_thread.run_sync(file_io.stalled.wait, 10), "no snapshot write began"
