"""Writing ``--json`` and ``--report`` files whole: a failed or interrupted write leaves the
file as it was.

A file written in place is truncated first, so a write that fails part way (a full disk) or
is interrupted (Ctrl-C) would destroy the previous run's file and leave a truncated document
in its place. Each file is written to a temporary file beside it instead, then renamed over
it: readers see the old file or the new one, never a part of either. What is not a regular
file (``/dev/stdout``, ``/dev/null``, a named pipe) is written in place: it keeps no
document to lose, and it must never be replaced by a file.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import suppress
from pathlib import Path


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole, or leave ``path`` as it was and raise.

    The file keeps the permissions of the one it replaces (a new file gets those ``open``
    gives, under the umask); a symbolic link is followed, and the file it names replaced.
    An existing path that is not a regular file (a device, a pipe) is written in place.
    An ``OSError`` names ``path``, not the temporary file.
    """
    try:
        try:
            mode: int | None = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            with open(path, "w", encoding="utf-8") as stream:
                stream.write(text)
            return
        target = Path(os.path.realpath(path))
        _replace(target, text, None if mode is None else stat.S_IMODE(mode))
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


def _replace(target: Path, text: str, permissions: int | None) -> None:
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        if permissions is not None:
            os.chmod(temporary, permissions)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
