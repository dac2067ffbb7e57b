"""The command line: ``eventfold verify`` and ``eventfold inspect``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, InvalidStreamId, NewEvent, read_journal_files
from runtime._cli import SUBCOMMANDS, main, register

from .journal_files import without_clean_close

ROOT = Path(__file__).resolve().parent.parent


async def _write(directory: Path, key: bytes | None = None) -> None:
    async with FileJournal(directory, segment_bytes_max=4096, key=key) as journal:
        for index in range(60):
            await journal.append(
                f"s{index % 3}",
                [NewEvent("Counted", {"index": index}, {"by": "test"} if index == 0 else {})],
                expected_version=None,
            )


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    directory = tmp_path / "journal"
    anyio.run(_write, directory)
    return directory


def test_verify_an_intact_journal(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(journal_path)]) == 0
    out = capsys.readouterr().out
    segments = len(list(journal_path.glob("*.log")))
    assert f"intact: {segments} segments, 60 events, 3 streams" in out
    assert ", chain not keyed, head hash " in out
    assert len(out.split("head hash ")[1].strip()) == 64


def test_verify_names_the_file_and_offset_of_damage(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segment = sorted(journal_path.glob("*.log"))[1]
    raw = bytearray(segment.read_bytes())
    raw[64 + 20] ^= 0x80
    segment.write_bytes(bytes(raw))
    assert main(["verify", str(journal_path)]) == 1
    err = capsys.readouterr().err
    assert f"damaged: {segment} at byte offset 64:" in err
    assert "checksum" in err


def test_verify_notes_a_torn_tail_after_a_crash_and_refuses_it_after_a_clean_close(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash leaves a torn tail that opening cuts: that is no damage. After a clean close
    nothing can be torn, so the same bytes are damage, as opening refuses them."""
    segment = sorted(journal_path.glob("*.log"))[-1]
    end = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x30\x00\x00\x00\x01\x02")  # A partial frame.
    assert main(["verify", str(journal_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"damaged: {segment} at byte offset {end}: ")
    assert "closed cleanly" in captured.err
    without_clean_close(journal_path)  # As a crash leaves it.
    assert main(["verify", str(journal_path)]) == 0
    captured = capsys.readouterr()
    first, second = captured.out.splitlines()
    assert first.startswith(
        f"note: left by a crash, not damage: {segment} at byte offset {end}: torn tail of 6 bytes"
    )
    assert first.endswith("; opening the journal cuts it")
    assert second.startswith("intact: ")
    assert captured.err == ""


def test_inspect_and_checkpoint_note_what_a_crash_left_at_the_end(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn tail, and a segment file whose creation a crash cut short, hold no event: inspect
    lists every event before them, and says what it did not list (as checkpoint says what it
    did not anchor), rather than nothing."""
    without_clean_close(journal_path)  # As a crash leaves it.
    segment = sorted(journal_path.glob("*.log"))[-1]
    end = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x30\x00\x00\x00\x01\x02")  # A partial frame.
    created = journal_path / f"{61:020d}.log"
    created.write_bytes(b"EVFLD")
    assert main(["checkpoint", str(journal_path)]) == 0
    said_by_checkpoint = capsys.readouterr().err
    assert main(["inspect", str(journal_path)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 60
    assert said_by_checkpoint == captured.err
    assert captured.err.splitlines() == [
        f"note: {segment} at byte offset {end}: 6 bytes left out: a torn tail a crash left "
        f"(partial record: 6 bytes left, a frame header needs 8 at offset {end}), not damage; "
        f"opening the journal cuts it",
        f"note: {created} at byte offset 0: 5 bytes left out: a segment file with an "
        f"incomplete header, as a crash while creating it leaves it, not damage; opening the "
        f"journal removes it",
    ]


def test_verify_a_keyed_journal_needs_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "journal"
    anyio.run(_write, directory, b"k3y")
    key_file = tmp_path / "key"
    key_file.write_bytes(b"k3y")
    assert main(["verify", str(directory)]) == 1
    assert capsys.readouterr().err.startswith(f"error: the journal in {directory} is keyed")
    assert main(["verify", str(directory), "--key-file", str(key_file)]) == 0
    # Checked with the key: what it says is not only that nothing was damaged.
    assert ", keyed chain, head hash " in capsys.readouterr().out


def test_verify_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "nothing")]) == 1
    assert "no journal directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["verify", "inspect", "checkpoint"])
def test_a_path_that_is_a_file_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    regular_file = tmp_path / "notes.txt"
    regular_file.write_text("not a journal")
    assert main([command, str(regular_file)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert str(regular_file) in error
    assert regular_file.read_text() == "not a journal"


def test_inspect_prints_json_lines(journal_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(journal_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["position"] for line in lines] == list(range(1, 61))
    first = lines[0]
    assert (first["stream_id"], first["version"], first["type"]) == ("s0", 1, "Counted")
    assert (first["data"], first["metadata"]) == ({"index": 0}, {"by": "test"})
    assert first["recorded_at"].endswith("+00:00")


def test_inspect_prints_the_moment_to_the_nanosecond_the_journal_holds(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``recorded_at`` is cut to the microsecond; the journal keeps nanoseconds, which the
    lines lost."""
    assert main(["inspect", str(journal_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    recorded = list(read_journal_files(journal_path))
    assert [line["recorded_at_ns"] for line in lines] == [e.recorded_at_ns for e in recorded]
    assert [line["recorded_at"] for line in lines] == [e.recorded_at.isoformat() for e in recorded]
    assert list(lines[0]) == [
        "position",
        "stream_id",
        "version",
        "type",
        "recorded_at",
        "recorded_at_ns",
        "data",
        "metadata",
    ]


def test_inspect_one_stream_from_a_position(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(journal_path), "--stream", "s1", "--from-position", "50"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["data"]["index"] for line in lines] == [49, 52, 55, 58]
    assert {line["stream_id"] for line in lines} == {"s1"}


def test_inspect_of_a_stream_without_events_says_what_a_stream_id_is(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An entity id given where the stream id goes ("42" for "account-42") printed nothing,
    # as an empty stream does.
    assert main(["inspect", str(journal_path), "--stream", "42"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("note: no events in stream '42'. A stream id is the aggregate's name")
    assert main(["inspect", str(journal_path), "--stream", "s1", "--from-position", "60"]) == 0
    out, err = capsys.readouterr()
    assert (out, "from position 60" in err) == ("", True)
    assert main(["inspect", str(journal_path), "--stream", "s1"]) == 0
    assert capsys.readouterr().err == ""


def test_inspect_from_a_position_past_the_end_says_so(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It printed nothing, as an empty journal does.
    assert main(["inspect", str(journal_path), "--from-position", "1000000"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("note: no events from position 1000000: the journal's committed")
    assert main(["inspect", str(journal_path), "--from-position", "2"]) == 0
    out, err = capsys.readouterr()
    assert out
    assert err == ""


def test_a_subcommand_is_one_register_call(capsys: pytest.CaptureFixture[str]) -> None:
    register("echo-test", "say hello", lambda parser: None, lambda arguments: 7)
    try:
        assert main(["echo-test"]) == 7
        with pytest.raises(ValueError, match="registered already"):
            register("echo-test", "again", lambda parser: None, lambda arguments: 0)
    finally:
        del SUBCOMMANDS["echo-test"]


def test_the_module_runs_as_a_program(journal_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime._cli", "verify", str(journal_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "intact:" in done.stdout


async def _write_many(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        for start in range(0, 3000, 100):
            events = [NewEvent("Counted", {"index": index}) for index in range(start, start + 100)]
            await journal.append("many", events, expected_version=start)


def test_inspect_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    """As in ``eventfold inspect PATH | head -1``: the pipe closes after the first line, while
    the output is still far larger than a pipe's buffer. The exit status was 1, which a script
    under ``set -o pipefail`` could not tell from damage; it is 141, as for ``cat``."""
    anyio.run(_write_many, tmp_path / "journal")
    child = subprocess.Popen(
        [sys.executable, "-m", "runtime._cli", "inspect", str(tmp_path / "journal")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    first = child.stdout.readline()
    child.stdout.close()
    errors = child.stderr.read().decode()
    child.stderr.close()
    child.wait(timeout=60)
    assert json.loads(first)["position"] == 1
    assert errors == ""
    assert child.returncode == 128 + signal.SIGPIPE


@pytest.mark.parametrize(
    ("stream", "said"),
    [
        ("", "a stream id must not be empty"),
        ("s" * 256, "stream id is 256 bytes long in UTF-8; the limit is 255"),
        # A name given as bytes that are not UTF-8 reaches argv with surrogate escapes.
        (os.fsdecode(b"s\xff"), r"stream id 's\\udcff' is not valid UTF-8"),
    ],
)
def test_inspect_of_a_stream_id_no_journal_holds_says_so(
    journal_path: Path, capsys: pytest.CaptureFixture[str], stream: str, said: str
) -> None:
    """Such an id listed nothing with exit status 0 (or, not UTF-8, printed the codec's
    error), as if the stream were merely empty."""
    assert main(["inspect", str(journal_path), "--stream", stream]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.match(rf"error: {said}", captured.err)


def test_read_journal_files_refuses_bad_arguments_when_called(journal_path: Path) -> None:
    with pytest.raises(InvalidStreamId, match="must not be empty"):
        read_journal_files(journal_path, stream_id="")
    with pytest.raises(ValueError, match="from_position starts at 1, not 0"):
        read_journal_files(journal_path, from_position=0)
    with pytest.raises(ValueError, match="from_position is a global position"):
        read_journal_files(journal_path, from_position=1.5)  # type: ignore[arg-type]
