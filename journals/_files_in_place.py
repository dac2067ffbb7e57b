"""What stands at the names where a journal keeps its files: regular files, or nothing.

The journal makes only regular files, and refuses anything else at one of its names with
``JournalCorrupted`` naming it, in opening and in the read-only tools alike, before anything is
read or changed: a FIFO would block its reader for ever (in a worker thread, which Ctrl-C cannot
stop), a device feed it without end, a directory fail the journal long after it opened. At a
segment name and in place of the lock file, a link to nothing (or to no file at all) is refused
too: opening would create the file it points to, or read nothing where a segment was. At the
other names (index files, the clean-close record, temporary files), a name ``stat`` cannot
follow is left to the read or write that comes next, which finds no file there.
"""

from __future__ import annotations

import os
import re
from stat import S_ISDIR, S_ISREG

from ._exceptions import JournalCorrupted
from ._fileio import not_a_file

SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")
LOCK_FILE_NAME = "lock"


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(first position, path) of every segment file, in position order.

    Raises ``JournalCorrupted`` for the first segment name, in position order, that is not a
    regular file (or a link to one): a directory, a link to nothing, a device. A name that is
    gone by the time it is looked at is left out, as a torn segment creation that a journal
    opening meanwhile removed (only a read-only tool can see that; opening holds the lock).
    """
    found = []
    for name in os.listdir(directory):
        match = SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    found.sort()
    listed = []
    for first, path in found:
        kind = not_a_file(path)
        if kind == "nothing":
            continue
        if kind is not None:
            raise JournalCorrupted(
                path,
                0,
                f"this is {kind} where the journal keeps a segment file; move it away (the "
                f"journal reads events from regular files only)",
            )
        listed.append((first, path))
    return listed


def refuse_lock_file_in_place(directory: str) -> None:
    """Refuse anything but a regular file (or nothing) where the journal keeps its lock file,
    before opening creates or opens it (a link to nothing would create its target)."""
    path = os.path.join(directory, LOCK_FILE_NAME)
    kind = not_a_file(path)
    if kind is not None and kind != "nothing":
        raise JournalCorrupted(
            path,
            0,
            f"this is {kind} where the journal keeps its lock file",
            advice="The journal refuses to open, and changed nothing. Move it away: opening "
            "creates the lock file again.",
        )


def refuse_non_file_in_place(path: str) -> None:
    """Refuse a directory, or anything else that is not a regular file (a FIFO, a device),
    where the journal keeps one of its files (an index file, say): a FIFO would block its
    reader for ever (a worker thread that Ctrl-C cannot stop), a device feed it without end.
    Nothing there, or nothing ``stat`` can reach, is left to the read or write that follows.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if S_ISREG(mode):
        return
    kind = "a directory" if S_ISDIR(mode) else "not a regular file"
    raise JournalCorrupted(
        path,
        0,
        f"this is {kind} where the journal keeps a file; move it away (the journal writes "
        f"the file again when it needs it)",
    )


def refuse_non_files_in_place(path: str) -> None:
    """Refuse what is not a regular file in place of the file at ``path`` or of its temporary
    file (``.tmp``), through which the journal writes it. Opening checks both before it reads,
    writes or removes either, so that it refuses with ``JournalCorrupted`` before any change."""
    refuse_non_file_in_place(path)
    refuse_non_file_in_place(path + ".tmp")
