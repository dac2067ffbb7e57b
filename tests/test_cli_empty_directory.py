"""The command line on an empty directory: a journal not created yet, not a damaged one."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime._cli import main


def test_verify_calls_an_empty_directory_no_journal_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "holds no journal yet; opening it creates a new, empty journal" in captured.out
    assert "damaged" not in captured.out + captured.err


def test_verify_of_an_empty_directory_with_a_key_claims_no_keyed_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "keyed chain", though no batch was there to check with the key.
    journal = tmp_path / "journal"
    journal.mkdir()
    key_file = tmp_path / "key"
    key_file.write_bytes(b"k" * 32)
    assert main(["verify", str(journal), "--key-file", str(key_file)]) == 0
    out = capsys.readouterr().out
    assert "intact: 0 segments, 0 events, 0 streams, 0 batches, no batch to chain" in out
    assert "keyed chain" not in out


def test_inspect_of_an_empty_directory_lists_no_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_verify_names_missing_segments_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "snapshots.dat").write_bytes(b"")
    assert main(["verify", str(tmp_path)]) == 1
    assert "its segments are missing" in capsys.readouterr().err


def test_checkpoint_of_an_empty_directory_says_there_is_no_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for a directory that does not exist: an error, not damage; no token to print."""
    assert main(["checkpoint", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {tmp_path} holds no journal yet (no segment files, nothing else a journal "
        f"leaves), so there is no history to checkpoint; a journal is created there when it "
        f"is first opened\n"
    )
    assert main(["checkpoint", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("error: no journal directory at ")


def test_verify_of_a_checkpoint_against_an_empty_directory_says_its_history_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "no history to checkpoint; a journal is created there when it is first
    opened": of a journal whose every file was removed, the advice that creates a new, empty
    journal over the lost history, where the checkpoint shows that 60 events were there."""
    token = "eventfold-checkpoint/1/60/" + "ab" * 32
    assert main(["verify", str(tmp_path), "--checkpoint", token]) == 1
    out, error = capsys.readouterr()
    assert out == ""  # Not the note that opening creates a new, empty journal.
    assert error.startswith(
        f"error: {tmp_path} holds no journal (no segment files, nothing else a journal "
        f"leaves), yet the checkpoint is of history up to position 60: "
    )
    assert "all of that history is gone" in error
    assert "a journal is created there" not in error
    assert list(tmp_path.iterdir()) == []
