"""The ``eventfold`` command line: one subcommand per entry of ``SUBCOMMANDS``.

A new subcommand is one ``register`` call: a name, a help line, a function that adds its
arguments to its parser, and a function that runs it and answers the exit status::

    register("bench", "run the benchmark harness", configure_bench, run_bench)

Exit status: 0 when all is well, 1 when the command found a problem or could not write its
output, 2 for usage errors; 141 when the reader of the output went away, which ends the command
quietly (1 still if it had found a problem by then); 130 after Ctrl-C and 143 after SIGTERM,
which stop any command quietly once its clean-up ran. Output goes through ``_cli_output``,
which says why it could not be written.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson

from benchmarks import harness as bench
from journals import (
    Checkpoint,
    EventfoldError,
    JournalCorrupted,
    compact_journal_snapshots,
    export_checkpoint,
    read_journal_files,
    verify_checkpoint,
    verify_journal,
)

from ._cli_output import (
    EXIT_READER_GONE,
    OutputFailed,
    byte_writer,
    discard_output,
    flush_output,
    journal_warnings_as_notes,
    say,
)
from ._cli_signals import is_interrupt, sigterm_stops_like_ctrl_c

EXIT_OK = 0
EXIT_PROBLEM = 1


@dataclass(frozen=True, slots=True)
class Subcommand:
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}
"""Every subcommand by name; ``register`` adds one."""


def register(
    name: str,
    help: str,
    configure: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
) -> None:
    """Add a subcommand. ``run`` answers the process exit status."""
    if name in SUBCOMMANDS:
        raise ValueError(f"subcommand {name!r} is registered already")
    SUBCOMMANDS[name] = Subcommand(help, configure, run)


def _add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="the journal directory")
    parser.add_argument(
        "--key-file",
        type=Path,
        help="a file holding the secret key the journal was written with: its exact bytes, "
        "1 to 64 of them (a trailing newline is part of the key, not stripped)",
    )


class _CommandError(Exception):
    """A problem the command reports as ``error: ...`` with exit status 1."""


KEY_FILE_BYTES_MAX = 4096
"""The most a key file is read: far more than a key (1 to 64 bytes), so that the journal
functions still say how long a wrong key is, and a device named by mistake (``/dev/urandom``,
which never ends) is refused rather than read until memory runs out."""


def _key(arguments: argparse.Namespace) -> bytes | None:
    """The key file's bytes, exactly: the key is what the application gave ``FileJournal``.

    A trailing newline is not stripped, since a key of raw bytes may end with one; a key of
    the wrong length is refused by the journal functions, whose message names a newline.
    """
    key_file: Path | None = arguments.key_file
    if key_file is None:
        return None
    try:
        with key_file.open("rb") as file:
            key = file.read(KEY_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise _CommandError(
            f"cannot read the key file {key_file}: {error.strerror or error}; give the path "
            f"of the file holding the journal's key"
        ) from None
    if len(key) > KEY_FILE_BYTES_MAX:
        raise _CommandError(
            f"the key file {key_file} holds more than {KEY_FILE_BYTES_MAX} bytes, and a key is "
            f"1 to 64; give the file holding the journal's key, not a device such as "
            f"/dev/urandom (head -c 32 /dev/urandom > key makes a key file)"
        )
    return key


def _journal_command(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Report what keeps a journal command from reading the journal as ``error: ...``, exit 1,
    and what the journal logs meanwhile as ``note: ...`` lines.

    That is what the journal functions raise for a path that is no journal (a missing
    directory, a file), a file they cannot read (one of another account's journal, say), a
    key of the wrong length (``ValueError``), and a key file that cannot be read.
    """

    @functools.wraps(run)
    def checked(arguments: argparse.Namespace) -> int:
        try:
            with journal_warnings_as_notes():
                return run(arguments)
        except BrokenPipeError:
            raise  # The reader went away: main stops quietly.
        except (OSError, EventfoldError, ValueError, _CommandError) as error:
            flush_output()
            print(f"error: {_said(error)}", file=sys.stderr)
            return EXIT_PROBLEM

    return checked


def _said(error: Exception) -> str:
    """The error as one line: an ``OSError`` of a file as the file and what the OS said."""
    if not isinstance(error, OSError) or error.filename is None or error.strerror is None:
        return str(error)
    said = f"cannot read {error.filename}: {error.strerror}"
    if isinstance(error, PermissionError):
        said += " (run the command as a user who may read the journal's files)"
    return said


def _said_while_writing(error: OSError) -> str:
    """An ``OSError`` of a file met by a command that writes the journal (``compact``): unlike
    the commands that only read, it may have been a write, so it is not called a read."""
    said = f"cannot read or write {error.filename}: {error.strerror}"
    if error.errno == errno.EROFS:
        return said + (
            " (compacting writes the journal's files, and their file system is mounted "
            "read-only: compact where it is mounted read-write)"
        )
    if isinstance(error, PermissionError):
        said += " (compacting writes the journal's files: run it as the user who owns them)"
    return said


def _checkpoint_token(token: str) -> Checkpoint:
    """``Checkpoint.parse`` for argparse, which shows only an ArgumentTypeError's message."""
    try:
        return Checkpoint.parse(token)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# -- verify ----------------------------------------------------------------------------------


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    _add_journal_arguments(parser)
    parser.add_argument(
        "--checkpoint",
        type=_checkpoint_token,
        help="also check that history up to this checkpoint (from 'eventfold checkpoint') is "
        "unchanged",
    )


@_journal_command
def _run_verify(arguments: argparse.Namespace) -> int:
    key = _key(arguments)
    report = verify_journal(arguments.path, key=key)
    changed: JournalCorrupted | None = None
    if report.problem is None and arguments.checkpoint is not None:
        # Checked before the notes are printed: of a directory without a journal, a checkpoint
        # of history raises that the history is gone, which the note that opening would create
        # a new journal there must not precede.
        try:
            verify_checkpoint(arguments.path, arguments.checkpoint, key=key)
        except JournalCorrupted as error:
            changed = error
    for note in report.notes:
        say(f"note: {note}")
    if report.problem is not None:
        print(f"damaged: {report.problem}", file=sys.stderr)
        return EXIT_PROBLEM
    if changed is not None:
        print(f"damaged: {changed}", file=sys.stderr)
        return EXIT_PROBLEM
    if arguments.checkpoint is not None:
        say(f"checkpoint holds: history up to position {arguments.checkpoint.position}")
    # Whether the chain could have been recomputed by whoever can write the files: an intact
    # chain without a key shows that nothing was damaged, not that nothing was forged.
    if not report.batches:
        chain = "no batch to chain"  # A key given or not, nothing was checked with it.
    else:
        chain = "keyed chain" if key is not None else "chain not keyed"
    say(
        f"intact: {report.segments} segments, {report.events} events, "
        f"{report.streams} streams, {report.batches} batches, {chain}, "
        f"head hash {report.head_hash}"
    )
    return EXIT_OK


# -- checkpoint ------------------------------------------------------------------------------


@_journal_command
def _run_checkpoint(arguments: argparse.Namespace) -> int:
    try:
        checkpoint = export_checkpoint(arguments.path, key=_key(arguments))
    except JournalCorrupted as error:
        print(f"damaged: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    say(str(checkpoint))
    flush_output()  # The token, before the notes on what it does not cover.
    # What the checkpoint left out at the end (the last batch of a journal that is open, a
    # torn tail): without a word, a journal whose only batch was in flight looked empty.
    for left_out in checkpoint.left_out:
        print(f"note: {left_out}", file=sys.stderr)
    return EXIT_OK


# -- inspect ---------------------------------------------------------------------------------


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    _add_journal_arguments(parser)
    parser.add_argument(
        "--stream",
        help="only the events of this stream id: the aggregate's name, '-', the entity id "
        "(account-42 for entity 42 of the aggregate 'account')",
    )
    parser.add_argument(
        "--from-position",
        type=_position,
        default=1,
        help="start at this global position (from 1)",
    )


def _position(text: str) -> int:
    """A global position for argparse, which reports an ArgumentTypeError as a usage error."""
    try:
        position = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position (a whole number)") from None
    if position < 1:
        raise argparse.ArgumentTypeError(f"positions start at 1, not {position}")
    return position


@_journal_command
def _run_inspect(arguments: argparse.Namespace) -> int:
    write = byte_writer()
    printed = 0
    listing = read_journal_files(
        arguments.path,
        from_position=arguments.from_position,
        stream_id=arguments.stream,
        key=_key(arguments),
    )
    try:
        for event in listing:
            line = {
                "position": event.position,
                "stream_id": event.stream_id,
                "version": event.version,
                "type": event.type,
                "recorded_at": event.recorded_at.isoformat(),
                "recorded_at_ns": event.recorded_at_ns,  # What the journal holds: nanoseconds.
                "data": event.data,
                "metadata": dict(event.metadata),
            }
            write(orjson.dumps(line) + b"\n")
            printed += 1
    except JournalCorrupted as error:
        flush_output()
        print(f"damaged: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    flush_output()  # The events, before the notes on what followed them.
    # What the listing left out at the end (the last batch of a journal that is open, a torn
    # tail): without a word, a journal whose only batch was in flight looked empty.
    for left_out in listing.left_out:
        print(f"note: {left_out}", file=sys.stderr)
    if printed or any(left_out.events for left_out in listing.left_out):
        # Events were found: the stream and the position are right, even if the only ones
        # are in a batch left out (said above).
        return EXIT_OK
    if arguments.stream is not None:
        # An entity id given for a stream id ("42" for "account-42") finds nothing: say so,
        # rather than let an empty answer pass for an empty stream.
        where = "" if arguments.from_position == 1 else f" from position {arguments.from_position}"
        print(
            f"note: no events in stream {arguments.stream!r}{where}. A stream id is the "
            f"aggregate's name, '-', then the entity id: account-42, not 42",
            file=sys.stderr,
        )
    elif arguments.from_position > 1:
        # A position past the end prints nothing, as an empty journal does: say which it is.
        print(
            f"note: no events from position {arguments.from_position}: the journal's "
            f"committed events end before it",
            file=sys.stderr,
        )
    return EXIT_OK


# -- compact ---------------------------------------------------------------------------------


@_journal_command
def _run_compact(arguments: argparse.Namespace) -> int:
    key = _key(arguments)
    try:
        compaction = anyio.run(
            functools.partial(compact_journal_snapshots, arguments.path, key=key)
        )
    except JournalCorrupted as error:
        print(f"damaged: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    except BrokenPipeError:
        raise
    except OSError as error:
        if error.filename is None or error.strerror is None:
            raise
        raise _CommandError(_said_while_writing(error)) from None
    try:
        say(
            f"compacted {arguments.path}: {compaction.snapshots_before} snapshots "
            f"({compaction.bytes_before} bytes) down to {compaction.snapshots_after} "
            f"({compaction.bytes_after} bytes)"
        )
        flush_output()
    except OutputFailed as error:
        raise OutputFailed(error.error, done="the snapshot file was compacted") from None
    return EXIT_OK


register(
    "verify",
    "check every record's checksum and the hash chain of a journal directory",
    _configure_verify,
    _run_verify,
)
register(
    "checkpoint",
    "print the journal's head chain hash as a checkpoint token to keep elsewhere",
    _add_journal_arguments,
    _run_checkpoint,
)
register(
    "inspect",
    "print a journal's committed events as JSON lines",
    _configure_inspect,
    _run_inspect,
)
register(
    "compact",
    "compact the snapshot file of a journal no process has open (takes its lock)",
    _add_journal_arguments,
    _run_compact,
)
register("bench", "measure eventfold on this machine, durably", bench.add_arguments, bench.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventfold", description="eventfold: an embeddable event-sourcing runtime."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=subcommand.help, description=subcommand.help)
        subcommand.configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; answer the exit status.

    Ctrl-C and SIGTERM stop any command quietly: one line on stderr, exit status 130 or 143,
    after the command's clean-up (the benchmarks' temporary journals) has run. The installed
    ``eventfold`` script starts at ``eventfold_cli.main``, which says the same of a signal
    that lands before this runs (while this module is imported).
    """
    arguments = build_parser().parse_args(argv)
    with sigterm_stops_like_ctrl_c() as stop:
        try:
            return _run(arguments)
        except BaseException as error:
            # Also when the signal lands while ``_run`` handles another error.
            if not is_interrupt(error):
                raise
    # Output still buffered for a slow reader (a pager) is dropped: the user asked to stop,
    # and flushing it at exit could block again.
    discard_output()
    with contextlib.suppress(OSError):
        print(stop.message, file=sys.stderr)
    return stop.exit_status


def _run(arguments: argparse.Namespace) -> int:
    status: int | None = None
    try:
        status = SUBCOMMANDS[arguments.command].run(arguments)
        # Here, where a failure is said, rather than at the interpreter's exit, which reports
        # it as "Exception ignored" and exits with status 120.
        flush_output()
        return status
    except OutputFailed as error:
        print(f"error: {error}", file=sys.stderr)
        discard_output()  # What is still buffered would fail again at exit.
        return EXIT_PROBLEM
    except (FileNotFoundError, EventfoldError) as error:
        # Raised by a command other than the journal ones, which report their own.
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    except BrokenPipeError:
        # The reader went away (``eventfold inspect PATH | head``): stop quietly, as other
        # tools do, and keep Python from complaining again when it flushes stdout at exit.
        discard_output()
        # A verdict said already (damage, on stderr, before verify's notes were flushed) is
        # what the status says: 141 would pass it off as a reader that had what it wanted.
        return EXIT_READER_GONE if status in (None, EXIT_OK) else status


if __name__ == "__main__":
    sys.exit(main())
