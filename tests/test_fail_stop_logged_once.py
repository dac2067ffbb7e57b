"""A FileJournal's fail-stop is logged once, whichever write fails it first.

A failing disk fails a batch's write and a snapshot's write alike; the one that fails first
fails the journal and is logged at error level (durability.md, G5). One that fails after it,
of a journal already failed, is not the failure of the journal and must not be logged as a
second one.
"""

from __future__ import annotations

import errno
import logging
import threading
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from journals import FileJournal, JournalFailed, NewEvent
from journals.testing import FaultyFileIO

pytestmark = pytest.mark.anyio


class _HeldThenFailing(FaultyFileIO):
    """Once ``armed``: the first write waits for ``release``, then fails with EIO; every
    other write fails with EIO at once."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.held = threading.Event()
        self.release = threading.Event()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if not self.armed:
            return super().pwrite(fd, data, offset)
        if not self.held.is_set():
            self.held.set()
            assert self.release.wait(10)
        raise OSError(errno.EIO, "Input/output error (simulated write failure)")


@pytest.mark.parametrize("first", ["snapshot", "batch"])
async def test_a_write_failing_after_another_failed_the_journal_is_not_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, first: str
) -> None:
    # The write of the other kind is held under way, and fails once the first failed the
    # journal: both were logged as the journal's failure, the second saying "the journal is
    # failed (fail-stop)" of a journal failed already.
    faults = _HeldThenFailing()
    directory = tmp_path / "journal"
    caplog.set_level(logging.DEBUG, logger="journals.file")
    async with FileJournal(directory, file_io=faults) as journal:
        await journal.append("s", [NewEvent("E", {})], expected_version=0)
        faults.armed = True
        failures: list[str] = []

        async def append() -> None:
            with pytest.raises(JournalFailed) as caught:
                await journal.append("s", [NewEvent("E", {})], expected_version=1)
            failures.append(str(caught.value))

        async def save() -> None:
            with pytest.raises(JournalFailed) as caught:
                await journal.save_snapshot("s", 1, {"state": 1})
            failures.append(str(caught.value))

        held, failing = (append, save) if first == "snapshot" else (save, append)
        async with anyio.create_task_group() as group:
            group.start_soon(held)
            assert await anyio.to_thread.run_sync(faults.held.wait, 10)  # Its write is held.
            await failing()
            faults.release.set()  # Now the held write fails too.
        assert len(failures) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    if first == "snapshot":
        assert errors[0].startswith(f"the journal in {directory} failed (fail-stop): writing")
    else:
        assert errors[0].startswith(f"journal write failed in {directory} (OSError(5, ")
    later = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("after the journal had failed" in message for message in later), later
