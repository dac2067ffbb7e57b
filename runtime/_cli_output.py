"""How the ``eventfold`` commands write their output: to standard output, every failure said.

Standard output is buffered when it is a file or a pipe, so a write that fails (a full disk
under ``> file``, a reader gone) may fail only at a later write or at the flush; the
commands flush it themselves before they end (``flush_output``), rather than leave the flush
to the interpreter's exit, which would report a failure as ``Exception ignored`` with exit
status 120. A write that fails is ``OutputFailed``, apart from ``BrokenPipeError`` (the reader
went away), which the command line ends quietly on, with ``EXIT_READER_GONE``. Python leaves
``sys.stdout`` None when descriptor 1 is closed (``>&-``): the output then goes nowhere, as
``print``'s does, and the exit status still answers.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

EXIT_READER_GONE = 128 + signal.SIGPIPE
"""The exit status when the reader of the output went away (``eventfold inspect PATH | head``):
141, what a shell reports for a program that SIGPIPE ended, as it ends ``cat`` or ``grep``
there. Quiet, since the reader had what it wanted; yet told apart from 0 and from 1 (damage, an
error) by a script that checks every status of a pipeline (``set -o pipefail``)."""


class OutputFailed(Exception):
    """Standard output refused what the command wrote: said as ``error: ...``, exit status 1.

    ``done``: what the command had done before, which the failure does not undo (the
    compaction of the snapshot file, say), or None.
    """

    def __init__(self, error: OSError, done: str | None = None) -> None:
        self.error = error
        self.done = done
        said = (
            f"cannot write the output (standard output): {error.strerror or error}; what "
            f"was written of it is incomplete"
        )
        if done is not None:
            said += f" ({done})"
        super().__init__(said)


def say(line: str) -> None:
    """Write ``line`` and a newline to standard output, which holds what the command found.

    A character the output's encoding cannot hold (a path in another alphabet under a locale
    without UTF-8, a file name that is not UTF-8) is written as a backslash escape, as Python
    writes such characters to standard error, rather than fail the line.
    """
    stdout = sys.stdout
    if stdout is None:
        return
    try:
        _write_escaped(stdout, line + "\n")
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputFailed(error) from None


def _write_escaped(stream: TextIO, text: str) -> None:
    """Write ``text``, with what the stream's encoding cannot hold as backslash escapes."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        # A text stream encodes the whole text before it writes any of it.
        encoding = stream.encoding or "utf-8"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def byte_writer() -> Callable[[bytes], object]:
    """A function that writes bytes to standard output (``inspect``'s JSON lines, which are
    UTF-8 whatever the locale); it raises ``OutputFailed`` as ``say`` does."""
    stdout = sys.stdout
    if stdout is None:
        return len
    write = stdout.buffer.write

    def write_bytes(data: bytes) -> object:
        try:
            return write(data)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise OutputFailed(error) from None

    return write_bytes


def flush_output() -> None:
    """Write out what standard output still buffers; ``OutputFailed`` if it cannot."""
    stdout = sys.stdout
    if stdout is None:
        return
    try:
        stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        raise OutputFailed(error) from None


def discard_output() -> None:
    """Drop what standard output still buffers, and whatever is written to it later: its
    reader went away, or the user asked to stop and a flush could block again."""
    stdout = sys.stdout
    if stdout is None:
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())


class _NoteHandler(logging.Handler):
    """A record of the journals as one line on standard error: ``note: ...``, or
    ``error: ...`` from ERROR up."""

    def emit(self, record: logging.LogRecord) -> None:
        # Whatever happens here must not reach the journal that logged.
        stderr = sys.stderr
        if stderr is None:
            return
        kind = "error" if record.levelno >= logging.ERROR else "note"
        try:
            _write_escaped(stderr, f"{kind}: {record.getMessage()}\n")
        except (OSError, ValueError):
            pass  # Standard error is gone or closed: the exit status still answers.
        except Exception:
            self.handleError(record)


@contextmanager
def journal_warnings_as_notes() -> Iterator[None]:
    """While the block runs, what the journals log from WARNING up is a ``note:`` line (from
    ERROR up an ``error:`` line) on standard error.

    ``eventfold compact`` opens the journal as an application does, and opening logs what it
    did or met: a torn tail it cut, index files it could not use. An application routes these
    records to its own logging; the command set none up, so Python printed the bare message,
    unlike every other line the command prints.
    """
    logger = logging.getLogger("journals")
    handler = _NoteHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
