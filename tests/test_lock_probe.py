"""Opening is not refused because a reader asked, for a moment, whether the journal is open.

``export_checkpoint`` and ``read_journal_files`` ask by requesting a shared lock on the
directory's lock file and giving it back at once (``journal_is_open``). A ``FileJournal``
opening in that instant must still open; and a refusal says "this process" only when a
journal of this process holds the lock. The test file layer below holds such a shared lock
exactly while opening asks for the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalLocked, NewEvent
from journals.testing import FileIO

from .journal_files import locked_by_another_process


class ProbedWhileOpening(FileIO):
    """Holds a shared lock on the lock file, as ``journal_is_open`` does, from the moment the
    opener opens that file; gives it back when the opener lets go of a lock (``LOCK_UN``),
    unless ``stays``."""

    def __init__(self, *, stays: bool) -> None:
        self.stays = stays
        self.probe: int | None = None
        self.probed = False

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        if os.path.basename(path) == "lock" and not self.probed:
            self.probed = True
            self.probe = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fcntl.flock(self.probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return fd

    def flock(self, fd: int, operation: int) -> None:
        super().flock(fd, operation)
        if operation == fcntl.LOCK_UN and not self.stays:
            self.release()

    def release(self) -> None:
        if self.probe is not None:
            os.close(self.probe)
            self.probe = None


def _open_and_append(directory: Path, file_io: FileIO | None = None) -> None:
    async def session() -> None:
        async with FileJournal(directory, file_io=file_io) as journal:
            await journal.append("s", [NewEvent("T", {})], expected_version=None)

    anyio.run(session)


def test_opening_during_a_probe_waits_for_it_and_opens(tmp_path: Path) -> None:
    _open_and_append(tmp_path)  # The lock file now holds this process's id.
    file_io = ProbedWhileOpening(stays=False)
    _open_and_append(tmp_path, file_io)
    assert file_io.probed
    assert file_io.probe is None


def test_a_probe_that_stays_is_named_not_called_an_open_journal(tmp_path: Path) -> None:
    _open_and_append(tmp_path)  # The lock file now holds this process's id.
    file_io = ProbedWhileOpening(stays=True)
    try:
        with pytest.raises(JournalLocked, match="only ask whether it is open") as refused:
            _open_and_append(tmp_path, file_io)
    finally:
        file_io.release()
    assert "this process" not in str(refused.value)
    _open_and_append(tmp_path)


def test_a_journal_of_another_process_is_not_called_this_process_s(tmp_path: Path) -> None:
    _open_and_append(tmp_path)  # The lock file holds this process's id, and keeps it.
    with (
        locked_by_another_process(tmp_path),
        pytest.raises(JournalLocked, match="open in another process"),
    ):
        _open_and_append(tmp_path)
    _open_and_append(tmp_path)
