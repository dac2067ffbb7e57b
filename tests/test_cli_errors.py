"""The journal commands answer what keeps them from reading a journal with one line and exit 1.

No traceback for a key file that cannot be read or has the wrong length, for a file a command
cannot read, or for a path that is not a directory; and a bad ``--checkpoint`` token is
explained, not only called invalid. A file the command may not read is not called damaged.
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import IO

import anyio
import pytest

import journals._fileio
from journals import FileJournal, NewEvent
from runtime._cli import KEY_FILE_BYTES_MAX, main

from .journal_files import refuse_stat_at

COMMANDS = ["verify", "inspect", "checkpoint"]
ROOT = Path(__file__).resolve().parent.parent


async def _write(directory: Path, key: bytes | None = None) -> None:
    async with FileJournal(directory, key=key) as journal:
        for index in range(5):
            await journal.append(
                "s", [NewEvent("Counted", {"index": index})], expected_version=None
            )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_file_that_cannot_be_read_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    anyio.run(_write, tmp_path / "journal", b"k" * 32)
    assert main([command, str(tmp_path / "journal"), "--key-file", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot read the key file {tmp_path}: Is a directory; give the path of the "
        f"file holding the journal's key\n"
    )


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("key", "length"), [(b"ab" * 32 + b"\n", "65"), (b"", "0")])
def test_a_key_file_of_the_wrong_length_is_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, key: bytes, length: str
) -> None:
    anyio.run(_write, tmp_path / "journal", b"k" * 32)
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    assert main([command, str(tmp_path / "journal"), "--key-file", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: a key is 1 to 64 bytes long, not {length}")
    assert ("it ends with a newline" in captured.err) == key.endswith(b"\n")
    assert "intact" not in captured.out


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_file_far_longer_than_a_key_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    anyio.run(_write, tmp_path / "journal", b"k" * 32)
    key_file = tmp_path / "key"
    key_file.write_bytes(b"k" * (KEY_FILE_BYTES_MAX + 1))
    assert main([command, str(tmp_path / "journal"), "--key-file", str(key_file)]) == 1
    assert capsys.readouterr().err == (
        f"error: the key file {key_file} holds more than {KEY_FILE_BYTES_MAX} bytes, and a key "
        f"is 1 to 64; give the file holding the journal's key, not a device such as "
        f"/dev/urandom (head -c 32 /dev/urandom > key makes a key file)\n"
    )


@pytest.mark.skipif(not Path("/dev/urandom").exists(), reason="no /dev/urandom here")
def test_an_endless_device_given_as_the_key_file_is_refused(tmp_path: Path) -> None:
    # Read to its end, /dev/urandom would take memory until the process died; the child's
    # memory is capped so that a regression fails here rather than disturb the machine.
    anyio.run(_write, tmp_path / "journal", b"k" * 32)

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "verify", str(tmp_path / "journal"),
         "--key-file", "/dev/urandom"],
        cwd=ROOT, capture_output=True, text=True, check=False, preexec_fn=capped, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: the key file /dev/urandom holds more than"), done.stderr


def test_a_key_file_ending_with_a_newline_is_used_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key is the file's exact bytes: the newline is part of a key that has one."""
    key = b"ab" * 16 + b"\n"
    anyio.run(_write, tmp_path / "journal", key)
    key_file = tmp_path / "key"
    key_file.write_bytes(key)
    assert main(["verify", str(tmp_path / "journal"), "--key-file", str(key_file)]) == 0
    key_file.write_bytes(key.rstrip(b"\n"))
    assert main(["verify", str(tmp_path / "journal"), "--key-file", str(key_file)]) == 1
    assert "chain hash mismatch" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_directory_at_a_segment_name_is_a_damaged_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    segment = tmp_path / "00000000000000000001.log"
    segment.mkdir()
    assert main([command, str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(
        f"damaged: {segment} at byte offset 0: this is a directory where the journal keeps a "
        f"segment file"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_journal_the_user_may_not_read_is_an_error_line_not_damage(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """As for an operator checking a journal another account owns: its directory is 0700."""
    anyio.run(_write, tmp_path)
    lock = tmp_path / "lock"
    refuse_stat_at(monkeypatch, lock)
    assert main([command, str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot read {lock}: Permission denied (run the command as a user who may read "
        f"the journal's files)\n"
    )


class _FailingDisk:
    """A file whose bytes the disk cannot read: ``read`` fails with EIO, as the OS says it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def __enter__(self) -> _FailingDisk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.file.close()

    def fileno(self) -> int:
        return self.file.fileno()

    def read(self, size: int = -1) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.parametrize(
    ("command", "unreadable"),
    [
        *((command, "00000000000000000001.log") for command in COMMANDS),
        *((command, "snapshots.dat") for command in [*COMMANDS, "compact"]),
    ],
)
def test_a_file_the_disk_cannot_read_is_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    unreadable: str,
) -> None:
    """A failing disk is where an operator runs ``verify``: it said ``error: [Errno 5]
    Input/output error``, and not which file."""
    anyio.run(_write, tmp_path)
    failing = str(tmp_path / unreadable)

    def open_on_a_failing_disk(path: str, mode: str = "r") -> IO[bytes] | _FailingDisk:
        file = open(path, mode)  # noqa: SIM115 - closed by the caller, or by _FailingDisk
        return _FailingDisk(file) if path == failing else file

    monkeypatch.setattr(journals._fileio, "open", open_on_a_failing_disk, raising=False)
    # The snapshot file is read in pieces, with pread, from a file opened where it is read.
    failing_file = os.stat(failing)
    pread = os.pread

    def pread_on_a_failing_disk(fd: int, length: int, offset: int) -> bytes:
        if os.path.samestat(os.fstat(fd), failing_file):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", pread_on_a_failing_disk)
    assert main([command, str(tmp_path)]) == 1
    verb = "read or write" if command == "compact" else "read"
    assert capsys.readouterr().err.startswith(
        f"error: cannot {verb} {failing}: {os.strerror(errno.EIO)}"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_a_keyed_journal_checked_without_its_key_is_an_error_line_not_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    anyio.run(_write, tmp_path / "journal", b"k" * 32)
    assert main([command, str(tmp_path / "journal")]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"error: the journal in {tmp_path / 'journal'} is keyed (its hash chain was written "
        f"with a secret key) and no key was given: pass the key it was written with "
        f"(FileJournal(key=...); on the command line, --key-file FILE)\n"
    )
    assert captured.out == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_a_file_is_not_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    regular_file = tmp_path / "notes.txt"
    regular_file.write_text("not a journal")
    assert main([command, str(regular_file)]) == 1
    assert capsys.readouterr().err == (
        f"error: {regular_file} exists and is not a directory: not a journal\n"
    )


def test_a_bad_checkpoint_token_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify", str(tmp_path), "--checkpoint", "eventfold-checkpoint/1/5/abc"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --checkpoint: 'eventfold-checkpoint/1/5/abc' is not a checkpoint token" in err
    assert "expected 'eventfold-checkpoint/1/<position>/<64 hex digits>'" in err


@pytest.mark.parametrize(
    ("given", "said"),
    [("0", "positions start at 1, not 0"), ("one", "'one' is not a position (a whole number)")],
)
def test_a_from_position_that_is_no_position_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(tmp_path), "--from-position", given])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"eventfold inspect: error: argument --from-position: {said}"
    )


def test_inspect_and_checkpoint_refuse_a_damaged_end_after_a_clean_close(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_write, tmp_path)
    segment = tmp_path / "00000000000000000001.log"
    raw = bytearray(segment.read_bytes())
    raw[-61 - 3] ^= 0xFF  # In the last event, before the last commit record.
    segment.write_bytes(bytes(raw))
    for command in ("inspect", "checkpoint"):
        assert main([command, str(tmp_path)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(f"damaged: {segment} at byte offset ")
        assert "closed cleanly" in captured.err
