"""``eventfold inspect`` and ``verify`` of a journal that another process has open and writes.

The child (``tests/live_journal_child.py``) holds a batch where the test wants it: written and
waiting for its fdatasync, or torn halfway through its write. What the tools leave out of a
live journal, or find unfinished at its end, is said in a ``note:`` line, and is no damage.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime._cli import main

from .live_journal_child import STREAM, LiveJournal

FIRST_SEGMENT = "00000000000000000001.log"
OPEN = re.escape("the journal is open (a process holds its lock)")


def _inspect(
    directory: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[list[int], list[str]]:
    """Run ``eventfold inspect``; answer the positions it printed and its lines on stderr."""
    assert main(["inspect", str(directory), *options]) == 0
    captured = capsys.readouterr()
    positions = [int(line.split(",")[0].split(":")[1]) for line in captured.out.splitlines()]
    return positions, captured.err.splitlines()


def _last_batch_note(segment: Path, positions: str) -> str:
    return (
        rf"note: {re.escape(str(segment))} at byte offset \d+: \d+ bytes left out: {OPEN}, "
        rf"and they are its last batch \({positions}\), whose fdatasync may not have returned"
    )


def test_inspect_and_checkpoint_of_an_open_journal_say_what_they_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With its only batch written and waiting for its fdatasync, inspect printed nothing and
    said nothing, as of an empty journal, and checkpoint printed the empty history's token."""
    directory = tmp_path / "journal"
    segment = directory / FIRST_SEGMENT
    with LiveJournal(directory) as live:
        assert live.tell("hold 10") == 0
        positions, notes = _inspect(directory, capsys)
        assert positions == []
        assert len(notes) == 1
        assert re.match(_last_batch_note(segment, "1 event, position 1"), notes[0]), notes
        assert main(["checkpoint", str(directory)]) == 0
        captured = capsys.readouterr()
        assert captured.out == f"eventfold-checkpoint/1/0/{'0' * 64}\n"
        assert captured.err == notes[0] + "\n"
        assert live.tell("release") == 1
        size = segment.stat().st_size
        assert live.tell("tear 10 0") == 1  # Half of the second batch is written.
        # The journal writes a batch only once the fdatasync of the one before returned: the
        # first batch is durable now, and listed; only the torn bytes are left out.
        positions, notes = _inspect(directory, capsys)
        assert positions == [1]
        torn = segment.stat().st_size - size
        (note,) = notes
        assert re.match(
            rf"note: {re.escape(str(segment))} at byte offset {size}: {torn} bytes left out: "
            rf"{OPEN}, and they are not a committed batch \(.*\): one it is writing, or one "
            rf"whose write failed. Not damage$",
            note,
        ), notes
        assert main(["checkpoint", str(directory)]) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith("eventfold-checkpoint/1/1/")
        assert captured.err == note + "\n"
        assert live.tell("release") == 2
        assert live.tell("append 10") == 3
        positions, notes = _inspect(directory, capsys)
        assert positions == [1, 2]
        assert len(notes) == 1
        assert re.match(_last_batch_note(segment, "1 event, position 3"), notes[0]), notes
        # Asked for what only the batch left out holds, inspect does not say that the stream
        # or the position has no events.
        for options, batch in [
            (["--stream", STREAM], "1 event, position 3; 1 of them in what was asked for"),
            (["--from-position", "3"], "1 event, position 3"),
        ]:
            positions, notes = _inspect(directory, capsys, "--from-position", "3", *options)
            assert positions == []
            assert len(notes) == 1
            assert re.match(_last_batch_note(segment, batch), notes[0]), notes
        positions, notes = _inspect(directory, capsys, "--stream", "account-7")
        assert positions == []
        assert len(notes) == 2
        assert "0 of them in what was asked for" in notes[0]
        assert notes[1].startswith("note: no events in stream 'account-7'. A stream id is")
    # Closed: every event is durable, and listed.
    assert _inspect(directory, capsys) == ([1, 2, 3], [])
    assert main(["checkpoint", str(directory)]) == 0
    assert capsys.readouterr().err == ""


def _verify(directory: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run ``eventfold verify``, which must find the journal intact; answer its notes."""
    assert main(["verify", str(directory)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    *notes, intact = captured.out.splitlines()
    assert intact.startswith("intact: ")
    return notes


def test_verify_of_an_open_journal_does_not_call_what_it_is_writing_left_by_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch, a snapshot or a segment header half written by the journal that has the
    directory open was said to be "left by a crash", which "opening the journal cuts": an
    operator was told the service had crashed, and to open a journal it holds."""
    directory = tmp_path / "journal"
    open_note = re.escape(
        "note: the journal is open (a process holds its lock), and this is not damage: "
    )
    with LiveJournal(directory) as live:
        live.tell("append 1500")
        assert live.tell("append 1500") == 2
        assert live.tell("tear 10 0") == 2  # Fits in the first segment.
        (note,) = _verify(directory, capsys)
        assert re.match(
            rf"{open_note}{re.escape(str(directory / FIRST_SEGMENT))} at byte offset \d+: "
            rf"torn tail of \d+ bytes \(.*\): a batch the journal is writing, or one whose "
            rf"write failed$",
            note,
        ), note
        assert live.tell("release") == 3
        live.tell("tear-snapshot")
        (note,) = _verify(directory, capsys)
        assert re.match(
            rf"{open_note}{re.escape(str(directory / 'snapshots.dat'))} at byte offset 16: "
            rf"torn tail \(.*\): a snapshot the journal is saving, or one whose write failed$",
            note,
        ), note
        live.tell("release")
        assert live.tell("tear 1500 1") == 3  # The index file, then half the new header.
        (note,) = _verify(directory, capsys)
        created = directory / f"{4:020d}.log"
        assert note == (
            f"note: the journal is open (a process holds its lock), and this is not damage: "
            f"{created} at byte offset 0: segment file of 32 bytes with an incomplete header: "
            f"one the journal is creating, or one whose creation failed"
        )
        # Inspect says the same of it, and lists the batch before it: a roll begins once that
        # batch's fdatasync returned.
        positions, (note,) = _inspect(directory, capsys)
        assert positions == [1, 2, 3]
        assert note == (
            f"note: {created} at byte offset 0: 32 bytes left out: the journal is open (a "
            f"process holds its lock), and this segment file has no complete header yet: one "
            f"it is creating (or whose creation failed). Not damage"
        )
        assert live.tell("release") == 4
    assert _verify(directory, capsys) == []
