"""Errors say who found what, and what to do: the class and the advice fit the situation."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from journals import (
    Checkpoint,
    FileJournal,
    JournalCorrupted,
    JournalNotFound,
    NewEvent,
    NotAJournalDirectory,
    export_checkpoint,
    verify_checkpoint,
    verify_journal,
)

SEGMENT_BYTES_MAX = 4096


def _write(directory: Path, count: int, key: bytes | None = None) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
            for index in range(count):
                data = {"i": index, "padding": "p" * 150}
                await journal.append("s", [NewEvent("T", data)], expected_version=index)

    anyio.run(write)


def _open(directory: Path, key: bytes | None = None) -> None:
    async def open_and_close() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key):
            pass

    anyio.run(open_and_close)


def _flip(path: Path, offset: int) -> None:
    contents = bytearray(path.read_bytes())
    contents[offset] ^= 0x01
    path.write_bytes(bytes(contents))


@pytest.mark.anyio
async def test_damage_found_by_a_read_does_not_say_the_journal_refuses_to_open(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path) as journal:
        for index in range(10):
            await journal.append(
                "s", [NewEvent("T", {"i": index, "pad": "x" * 40})], expected_version=index
            )
        _flip(tmp_path / "00000000000000000001.log", 64 + 50)
        with pytest.raises(JournalCorrupted, match="The read stops here") as caught:
            _ = [event async for event in journal.read("s")]
    assert "refuses to open" not in str(caught.value)
    assert caught.value.during == "read"


def test_damage_found_by_a_checkpoint_does_not_say_the_journal_refuses_to_open(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 3)
    checkpoint = export_checkpoint(tmp_path)
    _flip(tmp_path / "00000000000000000001.log", 64 + 50)
    with pytest.raises(JournalCorrupted, match="cannot be shown unchanged") as caught:
        verify_checkpoint(tmp_path, checkpoint)
    assert "refuses to open" not in str(caught.value)


def test_damage_found_by_exporting_a_checkpoint_does_not_speak_of_a_checkpoint_given(
    tmp_path: Path,
) -> None:
    """No checkpoint is compared with history then, so the advice of one would mislead."""
    _write(tmp_path, 3)
    _flip(tmp_path / "00000000000000000001.log", 64 + 50)
    with pytest.raises(JournalCorrupted, match="No checkpoint is made of history") as caught:
        export_checkpoint(tmp_path)
    assert caught.value.during == "export"
    assert "cannot be shown unchanged" not in str(caught.value)
    assert "refuses to open" not in str(caught.value)


def test_an_empty_directory_has_no_checkpoint_and_says_why(tmp_path: Path) -> None:
    """No journal is not a damaged journal: the error is JournalNotFound, not JournalCorrupted."""
    with pytest.raises(JournalNotFound, match="holds no journal yet") as caught:
        export_checkpoint(tmp_path)
    assert "so there is no history to checkpoint" in str(caught.value)
    assert not isinstance(caught.value, JournalCorrupted)
    assert isinstance(caught.value, FileNotFoundError)
    # Of a checkpoint of history, nothing there means that history is gone from there.
    with pytest.raises(JournalNotFound, match=r"holds no journal .*all of that history is gone"):
        verify_checkpoint(tmp_path, Checkpoint(1, "00" * 32))
    with pytest.raises(JournalNotFound, match="so there is no history to checkpoint"):
        verify_checkpoint(tmp_path, Checkpoint(0, "00" * 32))
    with pytest.raises(JournalNotFound, match="no journal directory"):
        export_checkpoint(tmp_path / "missing")


def test_a_wrong_key_is_named_as_a_cause_of_a_chain_mismatch(tmp_path: Path) -> None:
    _write(tmp_path, 3, key=b"right key")
    with pytest.raises(JournalCorrupted, match="a wrong key gives the same mismatch"):
        _open(tmp_path, key=b"wrong key")
    problem = verify_journal(tmp_path, key=b"wrong key").problem
    assert problem is not None
    assert "wrong key" in problem.reason


def test_a_directory_in_place_of_an_index_file_is_a_journal_error(tmp_path: Path) -> None:
    _write(tmp_path, 40)  # Several segments, so index files.
    index_file = tmp_path / "00000000000000000001.idx"
    index_file.unlink()
    index_file.mkdir()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(JournalCorrupted, match="a directory where the journal keeps a file"):
        _open(tmp_path)
    assert sorted(os.listdir(tmp_path)) == before
    assert not (tmp_path / "00000000000000000001.idx.tmp").exists()
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(index_file)


def test_a_journal_path_that_is_a_file_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    path.write_bytes(b"not a journal")
    with pytest.raises(NotAJournalDirectory, match="exists and is not a directory"):
        _open(path)
    with pytest.raises(NotAJournalDirectory, match="exists and is not a directory"):
        verify_journal(path)
    assert path.read_bytes() == b"not a journal"


def _contents(directory: Path) -> dict[str, bytes | None]:
    """Every entry but the lock file (which holds the opener's process id): a file's bytes, or
    None for a directory."""
    return {
        entry.name: None if entry.is_dir() else entry.read_bytes()
        for entry in directory.iterdir()
        if entry.name != "lock"
    }


@pytest.mark.parametrize(
    ("name", "removed"),
    [
        # Opening rebuilds the missing index file through its temporary file.
        ("00000000000000000001.idx.tmp", "00000000000000000001.idx"),
        # Opening removes the clean-close record, and the temporary file a close may leave.
        ("closed-cleanly.tmp", None),
        ("closed-cleanly", "closed-cleanly"),
    ],
)
def test_a_directory_where_opening_writes_or_removes_a_file_is_refused_before_any_change(
    tmp_path: Path, name: str, removed: str | None
) -> None:
    _write(tmp_path, 40)  # Several segments, so index files; closed cleanly.
    if removed is not None:
        (tmp_path / removed).unlink()
    (tmp_path / name).mkdir()
    before = _contents(tmp_path)
    with pytest.raises(JournalCorrupted, match="a directory where the journal keeps a file"):
        _open(tmp_path)
    assert _contents(tmp_path) == before, "a refused open changes no file"
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(tmp_path / name)
    assert problem.offset == 0


@pytest.mark.parametrize("suffix", [".idx", ".idx.tmp"])
def test_a_directory_where_the_next_roll_writes_an_index_file_is_refused_on_open(
    tmp_path: Path, suffix: str
) -> None:
    _write(tmp_path, 40)
    last = sorted(tmp_path.glob("*.log"))[-1]
    in_place = tmp_path / f"{last.name[:20]}{suffix}"
    in_place.mkdir()
    before = _contents(tmp_path)
    with pytest.raises(JournalCorrupted, match="a directory where the journal keeps a file"):
        _open(tmp_path)
    assert _contents(tmp_path) == before, "a refused open changes no file"
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(in_place)
    in_place.rmdir()
    _open(tmp_path)  # Opens once the directory is moved away.


def test_a_directory_at_the_temporary_file_of_an_index_file_in_use_is_left_alone(
    tmp_path: Path,
) -> None:
    _write(tmp_path, 40)
    (tmp_path / "00000000000000000001.idx.tmp").mkdir()
    report = verify_journal(tmp_path)
    assert report.intact, report.problem
    _open(tmp_path)  # The index file is valid: opening writes no temporary file.
    assert (tmp_path / "00000000000000000001.idx.tmp").is_dir()
