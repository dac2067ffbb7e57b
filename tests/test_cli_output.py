"""What the journal commands do when standard output cannot take what they print.

A full disk under a redirection (``eventfold checkpoint PATH > token``) is one ``error:``
line and exit status 1; a reader that went away before the last line was flushed
(``eventfold verify PATH | head -0``) ends the command quietly, exit status 141; a descriptor
closed by whoever started the command (``>&-``) gets nothing and the exit status still
answers; a path the stream's encoding cannot hold (a directory named in another alphabet, a
locale without UTF-8) is printed escaped. Never Python's ``Exception ignored`` at exit
(status 120) or a traceback. Standard output is a buffered stream here, as for a user, whose
flush at exit the command must not leave to the interpreter.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, NewEvent
from runtime._cli import main

from .journal_files import without_clean_close

COMMANDS = ["verify", "checkpoint", "inspect", "compact"]


async def _write(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        for index in range(3):
            event = NewEvent("Counted", {"index": index})
            await journal.append("s-1", [event], expected_version=None)
        await journal.save_snapshot("s-1", 3, {"count": 3})


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    anyio.run(_write, directory)
    return directory


@pytest.fixture
def full_disk() -> Iterator[int]:
    """A file on a full file system: Linux's /dev/full refuses every write with ENOSPC."""
    if not os.path.exists("/dev/full"):  # pragma: no cover - not on Linux
        pytest.skip("no /dev/full here")
    descriptor = os.open("/dev/full", os.O_WRONLY)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def _buffered(descriptor: int) -> io.TextIOWrapper:
    """Standard output as Python makes it for a file or a pipe: buffered."""
    raw = io.FileIO(descriptor, "w", closefd=False)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")


@pytest.mark.parametrize("command", COMMANDS)
def test_output_to_a_full_disk_is_an_error_line(
    journal_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    full_disk: int,
    command: str,
) -> None:
    """The line waited in the buffer, and its flush failed at exit: exit status 120 and
    ``Exception ignored in: <_io.TextIOWrapper name='<stdout>'`` (inspect: a traceback)."""
    stdout = _buffered(full_disk)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main([command, str(journal_path)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(
        "error: cannot write the output (standard output): No space left on device; "
    ), error
    assert error.count("\n") == 1
    if command == "compact":
        assert "the snapshot file was compacted" in error
    # Nothing is left in the buffer for the interpreter to fail on again at exit.
    stdout.close()


@pytest.fixture
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe whose reader went away."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_reader_gone_before_the_last_flush_ends_the_command_quietly(
    journal_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    closed_pipe: int,
    command: str,
) -> None:
    # As ``eventfold verify PATH | head -0``: the line is still buffered when the command
    # ends, and only its flush meets the closed pipe.
    stdout = _buffered(closed_pipe)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main([command, str(journal_path)]) == 141
    assert capsys.readouterr().err == ""
    stdout.close()  # Python's own flush at exit finds nothing to write.


@pytest.mark.parametrize("command", COMMANDS)
def test_a_closed_standard_output_prints_nothing_and_answers_the_verdict(
    journal_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    # Python makes sys.stdout None when descriptor 1 is closed (``eventfold inspect P >&-``).
    monkeypatch.setattr(sys, "stdout", None)
    assert main([command, str(journal_path)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("name", "encoding"),
    [
        ("jöurnal", "ascii"),  # A locale without UTF-8 (PYTHONIOENCODING=ascii, say).
        (os.fsdecode(b"j\xffurnal"), "utf-8"),  # A name that is not UTF-8, in a UTF-8 locale.
    ],
)
@pytest.mark.parametrize("command", ["verify", "compact"])
def test_a_path_the_output_cannot_encode_is_printed_escaped(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    encoding: str,
    command: str,
) -> None:
    """The line with the path failed to encode: ``error: 'ascii' codec can't encode ...``
    and exit status 1, for ``compact`` after it had compacted."""
    directory = tmp_path / name
    try:
        anyio.run(_write, directory)
    except (UnicodeEncodeError, OSError):  # pragma: no cover - a file system refusing the name
        pytest.skip(f"this file system refuses the name {name!r}")
    without_clean_close(directory)
    with (directory / "00000000000000000001.log").open("ab") as segment:
        segment.write(b"\x30\x00")  # A torn tail: verify's note names the file.
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding=encoding, errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main([command, str(directory)]) == 0
    if command == "compact":  # Opening cut the torn tail and says so.
        assert capsys.readouterr().err.startswith("note: journal recovery cut a torn tail: ")
    else:
        assert capsys.readouterr().err == ""
    printed = raw.getvalue().decode(encoding)
    escaped = str(directory).encode(encoding, "backslashreplace").decode(encoding)
    assert escaped in printed
    assert printed.endswith("\n")


async def _write_segments(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        for version in range(40):
            event = NewEvent("Counted", {"index": version, "padding": "x" * 100})
            await journal.append("s-1", [event], expected_version=version or None)


def test_damage_found_before_the_reader_went_away_keeps_its_exit_status(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    closed_pipe: int,
) -> None:
    """As ``eventfold verify PATH | head -0`` of a damaged journal: the notes meet the closed
    pipe after the verdict was said. The exit status was 141, which a script takes for a
    reader that had what it wanted, not for the damage said on stderr."""
    directory = tmp_path / "journal"
    anyio.run(_write_segments, directory)
    segments = sorted(directory.glob("*.log"))
    (directory / segments[0].name).with_suffix(".idx").unlink()  # A note: opening rebuilds it.
    with segments[1].open("r+b") as segment:
        segment.seek(200)
        byte = segment.read(1)
        segment.seek(200)
        segment.write(bytes([byte[0] ^ 0xFF]))  # Damage in a sealed segment.
    stdout = _buffered(closed_pipe)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["verify", str(directory)]) == 1
    assert capsys.readouterr().err.startswith(f"damaged: {segments[1]} at byte offset ")
    stdout.close()
