"""Helpers for tests that open, look at or damage a closed journal's files.

A journal that closes cleanly records where it ends (``closed-cleanly``), and opening refuses
any damage at that end. A crash never leaves the record behind. Tests that cut or damage the
end of a closed journal to stand for a write torn by a crash take it away first
(``without_clean_close``), as the crash would have: the damage is then a torn tail, and
opening cuts it. Tests of what reads or opening make of a forged record take it away too, as
the forger would.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from journals import FileJournal
from journals import _file_snapshots as file_snapshots
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from journals._file_snapshots import SNAPSHOT_FILE_NAME


def without_clean_close(directory: Path | str) -> None:
    """Remove the clean-close record; fails if the journal in ``directory`` left none."""
    (Path(directory) / CLEAN_CLOSE_FILE_NAME).unlink()


def file_digests(directory: Path) -> dict[str, str]:
    """Each file of the directory (but the lock) by name, with the SHA-256 of its bytes: equal
    before and after an open that must change no file."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.name != "lock"
    }


def open_and_close(directory: Path, *, segment_bytes_max: int) -> None:
    """Open the journal in ``directory`` (recovering it) and close it again."""

    async def open_and_close() -> None:
        async with FileJournal(directory, segment_bytes_max=segment_bytes_max):
            pass

    anyio.run(open_and_close)


def refuse_stat_at(monkeypatch: pytest.MonkeyPatch, refused: Path) -> None:
    """Make ``os.stat`` of ``refused`` fail as it does for a user who may not search its
    directory (a journal's directory is made 0700: any account but its owner's)."""
    stat = os.stat

    def stat_as_another_user(
        path: int | str | os.PathLike[str],
        *,
        dir_fd: int | None = None,
        follow_symlinks: bool = True,
    ) -> os.stat_result:
        if not isinstance(path, int) and os.fspath(path) == str(refused):
            raise PermissionError(errno.EACCES, "Permission denied", str(refused))
        return stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "stat", stat_as_another_user)


@contextmanager
def locked_by_another_process(directory: Path) -> Iterator[None]:
    """Hold the journal's lock from a child process for the duration of the block."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(directory / "lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.communicate("")


def snapshot_file_size(directory: Path) -> int:
    """The size of the journal's snapshot file, in bytes."""
    return os.path.getsize(directory / SNAPSHOT_FILE_NAME)


class CompactionLooks:
    """Counts how often a snapshot store computes what a compaction keeps (``_compact``),
    a compaction or a look that found it not worth one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = file_snapshots.SnapshotStore._compact

        def counted(store: file_snapshots.SnapshotStore, *, only_if_worth: bool) -> object:
            self.count += 1
            return original(store, only_if_worth=only_if_worth)

        monkeypatch.setattr(file_snapshots.SnapshotStore, "_compact", counted)
