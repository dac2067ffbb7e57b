"""Where ``eventfold bench`` writes, checked before the run: a bad path must not cost a run.

Each check answers why the path cannot be used (a message for a usage error) or None. Nothing
is created here: the run creates the directories it needs as before. A check cannot promise
that a write succeeds later (the disk may fill, a file may appear meanwhile), so the writes
at the end are still guarded; it catches the mistakes made on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def file_problem(option: str, path: Path) -> str | None:
    """Why ``path`` cannot be written as a file (its missing directories created), or None.

    An existing file must be writable, and so must its directory: the file is replaced by a
    new one written beside it (``write_whole``). A device or a pipe is written in place."""
    if path.is_dir():
        return f"argument {option}: {path} is a directory; give the path of a file to write"
    if path.exists():
        if not os.access(path, os.W_OK):
            return _denied(option, path)
        if not path.is_file():
            return None  # A device or a pipe (/dev/stdout): written in place.
    # Also for an existing file: it is replaced by a new file made beside it.
    return _creation_problem(option, path.parent)


def directory_problem(option: str, path: Path, files: Iterable[str] = ()) -> str | None:
    """Why ``path`` cannot be used as a directory to write ``files`` (and others) in, created
    if missing, or None. Files of those names already there must be writable."""
    if path.exists() and not path.is_dir():
        return f"argument {option}: {path} is not a directory; give the path of a directory"
    for name in files:
        if (path / name).is_dir():
            return f"argument {option}: {path / name} is a directory; the run writes a file there"
        if (path / name).exists() and not os.access(path / name, os.W_OK):
            return _denied(option, path / name)
    return _creation_problem(option, path)


def _creation_problem(option: str, directory: Path) -> str | None:
    """Why ``directory`` (existing or to be created) cannot hold a new file, or None."""
    # The walk ends at the root, or at "." for a relative path: they exist unless the current
    # directory was removed.
    ancestors = (directory, *directory.parents)
    existing = next((candidate for candidate in ancestors if candidate.exists()), None)
    if existing is None:
        return f"argument {option}: none of the directories above {directory} exists"
    if not existing.is_dir():
        return f"argument {option}: {existing} is not a directory, so nothing can be created in it"
    if not os.access(existing, os.W_OK | os.X_OK):
        return _denied(option, existing)
    return None


def _denied(option: str, path: Path) -> str:
    return f"argument {option}: {path} is not writable (permission denied)"
