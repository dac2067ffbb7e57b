"""The writer thread's file layer and hand-over: synced writes, their fallback and failures."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import AppendResult, FileJournal, JournalFailed, NewEvent, verify_journal
from journals._file_thread import DedicatedThreadRunner
from journals.testing import FaultyFileIO, FileIO

needs_synced_writes = pytest.mark.skipif(
    not hasattr(os, "RWF_DSYNC"), reason="the platform has no synced write (pwritev RWF_DSYNC)"
)


class SystemCalls:
    """Records the file system calls ``FileIO`` makes, around the real ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.pwritev_error: int | None = None
        self.pwritev_bytes_max: int | None = None
        real_pwritev, real_pwrite, real_fdatasync = os.pwritev, os.pwrite, os.fdatasync

        def pwritev(fd: int, buffers: list[Any], offset: int, flags: int = 0) -> int:
            self.calls.append(("pwritev", flags))
            if self.pwritev_error is not None:
                raise OSError(self.pwritev_error, os.strerror(self.pwritev_error))
            data = b"".join(bytes(buffer) for buffer in buffers)[: self.pwritev_bytes_max]
            return real_pwritev(fd, [data], offset, flags)

        def pwrite(fd: int, data: Any, offset: int) -> int:
            self.calls.append(("pwrite", len(data)))
            return real_pwrite(fd, data, offset)

        def fdatasync(fd: int) -> None:
            self.calls.append(("fdatasync", None))
            real_fdatasync(fd)

        monkeypatch.setattr(os, "pwritev", pwritev)
        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def _write(file_io: FileIO, path: Path, chunks: list[bytes]) -> bytes:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        offset = 0
        for chunk in chunks:
            file_io.write_durably(fd, chunk, offset)
            offset += len(chunk)
    finally:
        os.close(fd)
    return path.read_bytes()


@needs_synced_writes
def test_a_durable_write_is_one_synced_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SystemCalls(monkeypatch)
    assert _write(FileIO(), tmp_path / "f", [b"first batch", b"second"]) == b"first batchsecond"
    assert calls.calls == [("pwritev", os.RWF_DSYNC), ("pwritev", os.RWF_DSYNC)]


@needs_synced_writes
def test_short_synced_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = SystemCalls(monkeypatch)
    calls.pwritev_bytes_max = 4
    assert _write(FileIO(), tmp_path / "f", [b"0123456789"]) == b"0123456789"
    assert calls.names() == ["pwritev"] * 3


@needs_synced_writes
@pytest.mark.parametrize("refusal", [errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS])
def test_where_synced_writes_are_refused_it_writes_then_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    calls = SystemCalls(monkeypatch)
    calls.pwritev_error = refusal
    file_io = FileIO()
    assert _write(file_io, tmp_path / "f", [b"abc", b"defg"]) == b"abcdefg"
    # Refused once, then not tried again on this FileIO.
    assert calls.calls == [
        ("pwritev", os.RWF_DSYNC),
        ("pwrite", 3),
        ("fdatasync", None),
        ("pwrite", 4),
        ("fdatasync", None),
    ]


@needs_synced_writes
def test_a_failed_synced_write_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SystemCalls(monkeypatch)
    calls.pwritev_error = errno.EIO
    with pytest.raises(OSError, match="Input/output error") as raised:
        _write(FileIO(), tmp_path / "f", [b"abc"])
    assert raised.value.errno == errno.EIO
    assert calls.names() == ["pwritev"]  # Fail-stop: no plain write, no fsync after it.


def test_a_subclass_that_injects_faults_has_its_methods_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SystemCalls(monkeypatch)
    faults = FaultyFileIO(fail_fsync_after=1)
    assert _write(faults, tmp_path / "f", [b"abc"]) == b"abc"
    assert calls.names() == ["pwrite", "fdatasync"]
    with pytest.raises(OSError, match="simulated fsync failure"):
        _write(faults, tmp_path / "g", [b"abc"])


@needs_synced_writes
@pytest.mark.anyio
async def test_a_failing_synced_write_fails_the_journal_and_keeps_what_was_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "journal"
    calls = SystemCalls(monkeypatch)
    outcomes: dict[int, AppendResult | BaseException] = {}

    async def attempt(index: int) -> None:
        try:
            outcomes[index] = await journal.append(
                "s", [NewEvent("E", {"i": index})], expected_version=None
            )
        except JournalFailed as error:
            outcomes[index] = error

    async with FileJournal(directory) as journal:
        for index in range(5):
            await attempt(index)
        calls.pwritev_error = errno.EIO
        async with anyio.create_task_group() as group:
            for index in range(5, 25):
                group.start_soon(attempt, index)
        await attempt(25)
    assert "fdatasync" not in calls.names()
    acknowledged = sorted(i for i, outcome in outcomes.items() if isinstance(outcome, AppendResult))
    assert acknowledged == list(range(5))
    assert all(isinstance(outcomes[i], JournalFailed) for i in range(5, 26))
    monkeypatch.undo()
    async with FileJournal(directory) as journal:
        assert [event.data["i"] async for event in journal.read_all()] == list(range(5))
    assert verify_journal(directory).intact


def _soon(backend: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` on the event loop once the running task yields."""
    if backend == "asyncio":
        asyncio.get_running_loop().call_soon(callback)
    else:
        import trio

        trio.lowlevel.current_trio_token().run_sync_soon(callback)


@pytest.mark.anyio
async def test_the_loop_waits_until_the_writer_enters_its_io(anyio_backend: str) -> None:
    runner = DedicatedThreadRunner(handoff_max_s=30.0)
    release = threading.Event()
    marks: list[str] = []
    seen_by_the_loop: list[list[str]] = []

    def call(entering_io: Callable[[], None]) -> str:
        marks.append("prepared")
        entering_io()
        release.wait(30.0)  # "I/O" that ends once the loop has looked.
        marks.append("written")
        return "done"

    def look() -> None:
        seen_by_the_loop.append(list(marks))
        release.set()

    try:
        # Scheduled first, but run only once run() yields: by then the call must be in its I/O.
        _soon(anyio_backend, look)
        assert await runner.run(call, runner.entering_io, handoff_s=30.0) == "done"
    finally:
        await runner.stop()
    assert seen_by_the_loop == [["prepared"]]
    assert marks == ["prepared", "written"]


@pytest.mark.anyio
async def test_a_call_that_never_enters_io_is_waited_for_only_briefly() -> None:
    runner = DedicatedThreadRunner(handoff_max_s=0.01)
    try:
        for value in range(3):
            assert await runner.run(lambda v=value: v * 2, handoff_s=30.0) == value * 2
    finally:
        await runner.stop()
