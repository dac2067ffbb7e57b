"""Something other than a file where the journal keeps a segment or its lock file is corruption.

A directory, a symbolic link to nothing or to no file at all (a loop, a path through a file, a
name too long) or a FIFO named like a segment (sealed, last, or the one the next roll creates),
or in place of the lock file, makes opening raise ``JournalCorrupted`` naming it, before any
change (durability.md G7); the read-only tools refuse it alike, as they refuse what opening
refuses. So does one in place of the snapshot file. A FIFO read as a segment
would block its reader for ever; a link to nothing at the lock or the snapshot file would have
opening create the file it points to.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

import journals._clean_close
import journals._fileio
from journals import (
    FileJournal,
    JournalCorrupted,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_journal,
)

from .journal_files import open_and_close, refuse_stat_at

SEGMENT_BYTES_MAX = 4096
EVENTS = 40

TOOLS: dict[str, Callable[[Path], object]] = {
    "export_checkpoint": export_checkpoint,
    "read_journal_files": lambda directory: list(read_journal_files(directory)),
}

KINDS = {
    "directory": "a directory",
    "link to nothing": "a symbolic link to nothing",
    "fifo": "not a regular file",
    # Links that ``stat`` cannot follow to anything, each with its own error.
    "link to itself": f"a path that leads to no file ({os.strerror(errno.ELOOP)})",
    "link through a file": f"a path that leads to no file ({os.strerror(errno.ENOTDIR)})",
    "link to a name too long": f"a path that leads to no file ({os.strerror(errno.ENAMETOOLONG)})",
}


def _write(directory: Path, count: int) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for index in range(count):
                data = {"i": index, "padding": "p" * 100}
                await journal.append("s", [NewEvent("T", data)], expected_version=index)

    anyio.run(write)


def _put(path: Path, kind: str) -> None:
    """Put a ``kind`` of thing that is not a file at ``path`` (taking away a file there)."""
    if path.exists():
        path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "link to nothing":
        elsewhere = path.parent.parent / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        path.symlink_to(elsewhere / path.name)  # Its directory exists: a file could be made.
    elif kind == "link to itself":
        path.symlink_to(path.name)
    elif kind == "link through a file":
        elsewhere = path.parent.parent / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        (elsewhere / "file").touch()
        path.symlink_to(elsewhere / "file" / path.name)
    elif kind == "link to a name too long":
        path.symlink_to("n" * 256)  # One more byte than a name may have.
    else:
        os.mkfifo(path)


def _entries(directory: Path) -> dict[str, object]:
    """What stands at each name of the directory, files by their bytes, without following
    links; and what the directory the links point into holds."""
    found: dict[str, object] = {}
    for entry in directory.iterdir():
        if entry.is_symlink():
            found[entry.name] = ("link", os.readlink(entry))
        elif entry.is_dir():
            found[entry.name] = "directory"
        elif entry.is_fifo():
            found[entry.name] = "fifo"
        elif entry.name != "lock":  # It holds the last opener's process id.
            found[entry.name] = entry.read_bytes()
    elsewhere = directory.parent / "elsewhere"
    found["(elsewhere)"] = sorted(os.listdir(elsewhere)) if elsewhere.exists() else None
    return found


def _segment(directory: Path, which: str) -> Path:
    segments = sorted(directory.glob("*.log"))
    assert len(segments) >= 3
    if which == "sealed segment":
        return segments[1]
    if which == "last segment":
        return segments[-1]
    return directory / f"{EVENTS + 1:020d}.log"  # The segment the next roll creates.


def _refused_alike(directory: Path, path: Path, reason: str) -> None:
    """Opening and every tool refuse ``path`` with ``reason``, and nothing changes."""
    before = _entries(directory)
    with pytest.raises(JournalCorrupted, match=re.escape(reason)) as opening:
        open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert opening.value.path == str(path)
    assert opening.value.offset == 0
    assert _entries(directory) == before, "a refused open changes nothing"
    for name, tool in TOOLS.items():
        with pytest.raises(JournalCorrupted, match=re.escape(reason)) as refused:
            tool(directory)
        assert refused.value.path == str(path), name
    problem = verify_journal(directory).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(path), 0)
    assert reason in problem.reason
    assert _entries(directory) == before, "the tools change nothing"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["sealed segment", "last segment", "segment of the next roll"])
def test_a_segment_that_is_not_a_file_is_refused_before_any_change(
    tmp_path: Path, which: str, kind: str
) -> None:
    directory = tmp_path / "journal"
    _write(directory, EVENTS)
    path = _segment(directory, which)
    _put(path, kind)
    reason = f"this is {KINDS[kind]} where the journal keeps a segment file"
    _refused_alike(directory, path, reason)


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_file_that_is_not_a_file_is_refused_before_any_change(
    tmp_path: Path, kind: str
) -> None:
    directory = tmp_path / "journal"
    _write(directory, EVENTS)
    path = directory / "lock"
    _put(path, kind)
    reason = f"this is {KINDS[kind]} where the journal keeps its lock file"
    _refused_alike(directory, path, reason)
    with pytest.raises(JournalCorrupted, match="Move it away: opening creates the lock file"):
        open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)
    # export_checkpoint says the same, not to restore a file from a backup.
    with pytest.raises(JournalCorrupted, match="Move it away: opening creates the lock file"):
        export_checkpoint(directory)
    if kind == "directory":
        path.rmdir()
    else:
        path.unlink()
    open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)  # Moved away: it opens.


@pytest.mark.parametrize("kind", KINDS)
def test_a_snapshot_file_that_is_not_a_file_is_refused_before_any_change(
    tmp_path: Path, kind: str
) -> None:
    directory = tmp_path / "journal"
    _write(directory, EVENTS)
    path = directory / "snapshots.dat"
    _put(path, kind)
    _refused_alike(directory, path, f"this is {KINDS[kind]} where the snapshot file belongs")


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("name", ["closed-cleanly", "sealed index file"])
def test_a_file_opening_reads_that_is_no_regular_file_is_refused_before_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kind: str
) -> None:
    """A FIFO where opening reads the clean-close record or a sealed segment's index file
    blocked opening and ``verify`` for ever (Ctrl-C and SIGTERM could not end it: the read
    runs in a worker thread); a device there (a link to /dev/zero) is read without end."""
    directory = tmp_path / "journal"
    _write(directory, EVENTS)
    path = directory / name if name == "closed-cleanly" else sorted(directory.glob("*.idx"))[1]
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
        # Should a read still reach it, it ends at once: the FIFO is read as empty.
        monkeypatch.setattr(journals._fileio, "open", _no_fifo_blocks, raising=False)
        monkeypatch.setattr(journals._clean_close, "open", _no_fifo_blocks, raising=False)
    else:
        path.symlink_to(os.devnull)  # Read as empty, where /dev/zero would never end.
    _refused_alike(directory, path, "this is not a regular file where the journal keeps a file")


def _no_fifo_blocks(path: str, mode: str = "r") -> IO[Any]:
    """``open``, but a FIFO is opened without waiting for a writer (so it reads as empty)."""
    if stat.S_ISFIFO(os.stat(path).st_mode):
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), mode)
    return open(path, mode)


def test_a_segment_gone_once_listed_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only tool may list a torn segment creation just before a journal that opens
    removes it: the name it listed is gone when it looks at it, and is left out."""
    directory = tmp_path / "journal"
    _write(directory, 3)
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: [*listdir(path), f"{4:020d}.log"])
    report = verify_journal(directory)
    assert report.intact, report.problem
    assert (report.segments, report.events) == (1, 3)


@pytest.mark.parametrize("name", ["lock", "snapshots.dat", "00000000000000000001.log"])
def test_a_file_that_cannot_be_looked_at_is_a_permission_error_not_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Whether a name is a file is asked with ``stat``; when ``stat`` is refused, nothing is
    known about what stands there, so the refusal is raised, not called damage."""
    directory = tmp_path / "journal"
    _write(directory, 3)
    refused = directory / name
    refuse_stat_at(monkeypatch, refused)
    with pytest.raises(PermissionError) as opening:
        open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)
    assert opening.value.filename == str(refused)
    for tool in [*TOOLS.values(), verify_journal]:
        with pytest.raises(PermissionError):
            tool(directory)
