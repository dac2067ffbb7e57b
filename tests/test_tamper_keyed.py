"""Forgery by someone who can rewrite every file: the keyed chain and anchored checkpoints.

Without a key anyone can recompute the hash chain, so a complete rewrite of the journal is
self-consistent; a secret key (BLAKE2b keyed mode) or a checkpoint kept elsewhere exposes it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from journals import (
    Checkpoint,
    FileJournal,
    JournalCorrupted,
    JournalKeyMissing,
    JournalNotFound,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_checkpoint,
    verify_journal,
)
from journals._codec import decode_segment_header
from journals._recovery import scan_segment
from runtime._cli import main as cli

from .journal_files import without_clean_close

KEY = b"k" * 32
SEGMENT_BYTES_MAX = 4096


async def _append(directory: Path, amounts: list[int], key: bytes | None, start: int = 0) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
        for number, amount in enumerate(amounts, start):
            events = [NewEvent("Paid", {"n": number, "amount": amount, "pad": "p" * 50})] * (
                1 + number % 2
            )
            await journal.append(f"account-{number % 3}", events, expected_version=None)


def write(directory: Path, amounts: list[int], key: bytes | None = None, start: int = 0) -> None:
    anyio.run(_append, directory, amounts, key, start)


async def _open(directory: Path, key: bytes | None) -> None:
    async with FileJournal(directory, key=key):
        pass


HISTORY = list(range(100, 130))
# The forger's version: one payment changed, everything else identical.
FORGED = [*HISTORY[:5], 999_999, *HISTORY[6:]]


def test_a_keyed_journal_verifies_only_with_its_key(tmp_path: Path) -> None:
    write(tmp_path, HISTORY, KEY)
    assert verify_journal(tmp_path, key=KEY).intact
    with pytest.raises(JournalKeyMissing, match="is keyed"):
        verify_journal(tmp_path)
    wrong = verify_journal(tmp_path, key=b"w" * 32).problem
    assert wrong is not None
    assert "chain hash mismatch" in wrong.reason
    assert wrong.path.endswith("00000000000000000001.log")
    with pytest.raises(JournalCorrupted, match="chain hash mismatch"):
        anyio.run(_open, tmp_path, b"w" * 32)


@pytest.mark.parametrize("appended", [HISTORY, []])
def test_a_missing_key_is_its_own_error_not_damage(tmp_path: Path, appended: list[int]) -> None:
    """Opening or reading a keyed journal without a key is a mistake of the caller's, not
    damage: no reader calls it ``JournalCorrupted`` (whose handlers restore from backups)."""
    write(tmp_path, appended, KEY)
    readers: list[Callable[[], object]] = [
        lambda: anyio.run(_open, tmp_path, None),
        lambda: verify_journal(tmp_path),
        lambda: list(read_journal_files(tmp_path)),
        lambda: export_checkpoint(tmp_path),
    ]
    if appended:  # A checkpoint at position 0 holds for any journal: nothing is read for it.
        checkpoint = export_checkpoint(tmp_path, key=KEY)
        readers.append(lambda: verify_checkpoint(tmp_path, checkpoint))
    for reader in readers:
        with pytest.raises(JournalKeyMissing) as missing:
            reader()
        assert not isinstance(missing.value, JournalCorrupted)
        assert missing.value.directory == str(tmp_path)
    anyio.run(_open, tmp_path, KEY)  # Nothing was changed: it opens with its key.


def test_a_keyed_segment_after_unkeyed_ones_is_damage_not_a_missing_key(tmp_path: Path) -> None:
    """Only the journal's first segment says whether the journal is keyed."""
    write(tmp_path, HISTORY, KEY)
    second = sorted(tmp_path.glob("*.log"))[1]
    data = second.read_bytes()
    header = decode_segment_header(data)
    with pytest.raises(JournalCorrupted, match="written with a key, the segments before it"):
        scan_segment(
            data,
            str(second),
            first_position=header.first_position,
            previous_hash=header.previous_hash,
            key=None,
            versions={},
            is_last=True,
        )


def test_rewriting_every_file_without_the_key_is_found(tmp_path: Path) -> None:
    write(tmp_path / "real", HISTORY, KEY)
    # The forger writes a complete, self-consistent journal, unkeyed or with a key of their own.
    write(tmp_path / "unkeyed", FORGED)
    write(tmp_path / "guessed", FORGED, b"g" * 32)
    assert verify_journal(tmp_path / "unkeyed").intact  # consistent for anyone without the key
    unkeyed = verify_journal(tmp_path / "unkeyed", key=KEY).problem
    assert unkeyed is not None
    assert (unkeyed.offset, unkeyed.reason) == (
        10,
        "the journal was written without a key; open it without one",
    )
    guessed = verify_journal(tmp_path / "guessed", key=KEY).problem
    assert guessed is not None
    assert guessed.reason == (
        "chain hash mismatch: the batch before it was altered, or the key is not the one the "
        "journal was written with (a wrong key gives the same mismatch; check the key first)"
    )
    with pytest.raises(JournalCorrupted, match="chain hash mismatch"):
        anyio.run(_open, tmp_path / "guessed", KEY)


def test_verify_with_a_key_file_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "journal", HISTORY, KEY)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    assert cli(["verify", str(tmp_path / "journal"), "--key-file", str(key_file)]) == 0
    assert "intact:" in capsys.readouterr().out
    key_file.write_bytes(b"w" * 32)
    assert cli(["verify", str(tmp_path / "journal"), "--key-file", str(key_file)]) == 1
    assert "chain hash mismatch" in capsys.readouterr().err


# -- checkpoints -------------------------------------------------------------------------------


def test_a_checkpoint_token_round_trips_and_bad_tokens_are_refused(tmp_path: Path) -> None:
    write(tmp_path, HISTORY[:3])
    checkpoint = export_checkpoint(tmp_path)
    assert checkpoint.position == 4  # appends of 1, 2 and 1 events
    assert Checkpoint.parse(str(checkpoint)) == checkpoint
    assert str(checkpoint).startswith("eventfold-checkpoint/1/4/")
    for bad in [
        "",
        "eventfold-checkpoint/1/4/abc",
        "eventfold-checkpoint/2/4/" + "0" * 64,
        f"{checkpoint}0",  # A longer hash, or anything after the token.
        f"x{checkpoint}",
    ]:
        with pytest.raises(ValueError, match="not a checkpoint token"):
            Checkpoint.parse(bad)
    # As a file or a terminal gives it: the line around it is not part of the token.
    assert Checkpoint.parse(f"  {checkpoint}\n") == checkpoint


def test_a_checkpoint_still_holds_after_the_journal_grows(tmp_path: Path) -> None:
    write(tmp_path, HISTORY[:4])
    early = export_checkpoint(tmp_path)  # in the middle of the first segment, once it grows
    write(tmp_path, HISTORY[4:], start=4)
    late = export_checkpoint(tmp_path)
    assert late.position > early.position
    assert len(list(tmp_path.glob("*.log"))) >= 2
    verify_checkpoint(tmp_path, early)
    verify_checkpoint(tmp_path, late)
    verify_checkpoint(tmp_path, Checkpoint(0, "0" * 64))


def test_a_checkpoint_exposes_a_complete_unkeyed_rewrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real, forged = tmp_path / "real", tmp_path / "forged"
    write(real, HISTORY)
    anchored = export_checkpoint(real)
    write(forged, FORGED)
    assert verify_journal(forged).intact  # the files alone cannot tell
    with pytest.raises(
        JournalCorrupted, match="history up to the checkpoint was changed"
    ) as raised:
        verify_checkpoint(forged, anchored)
    assert raised.value.path.endswith(".log")
    assert cli(["verify", str(forged), "--checkpoint", str(anchored)]) == 1
    assert "history up to the checkpoint was changed" in capsys.readouterr().err
    assert cli(["verify", str(real), "--checkpoint", str(anchored)]) == 0
    assert f"checkpoint holds: history up to position {anchored.position}" in (
        capsys.readouterr().out
    )


def test_a_checkpoint_exposes_whole_batches_cut_off_the_end(tmp_path: Path) -> None:
    write(tmp_path, HISTORY)
    anchored = export_checkpoint(tmp_path)
    last = sorted(tmp_path.glob("*.log"))[-1]
    data = last.read_bytes()
    # Cut the last batch exactly at the end of the one before: every file check passes.
    commit_length = (53).to_bytes(4, "little")
    previous_commit_end = data.rfind(commit_length, 0, len(data) - 61) + 61
    last.write_bytes(data[:previous_commit_end])
    # The journal was closed cleanly, and its clean-close record says where it ended.
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert "was closed cleanly" in report.problem.reason
    # Without that record (taken away too), every file check passes; the checkpoint does not.
    without_clean_close(tmp_path)
    assert verify_journal(tmp_path).intact
    with pytest.raises(JournalCorrupted, match="history was cut"):
        verify_checkpoint(tmp_path, anchored)


def _commit_record_of(segment: Path, position: int) -> int:
    """The offset of the commit record of the batch that ends at ``position``."""
    data = segment.read_bytes()
    offset = 64
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "little")
        if data[offset + 8] == 2 and data[offset + 17 : offset + 25] == position.to_bytes(
            8, "little"
        ):
            return offset
        offset += 8 + length
    raise AssertionError(f"no batch ends at position {position} in {segment}")


@pytest.mark.parametrize("where", ["inside a segment", "at the end of a sealed segment"])
def test_a_checkpoint_that_differs_in_any_digit_is_refused_at_its_commit_record(
    tmp_path: Path, where: str
) -> None:
    write(tmp_path, HISTORY)
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) >= 2
    # Appends of 1, 2, 1 and 2 events: a batch ends at position 6.
    position = 6 if where == "inside a segment" else int(segments[1].name[:20]) - 1
    segment = segments[0]
    true_hash = _hash_at(tmp_path, position)
    verify_checkpoint(tmp_path, Checkpoint(position, true_hash))
    last_digit = "1" if true_hash[-1] == "0" else "0"
    for wrong_hash in ("0" * 64, true_hash[:-1] + last_digit):
        with pytest.raises(
            JournalCorrupted, match="history up to the checkpoint was changed"
        ) as wrong:
            verify_checkpoint(tmp_path, Checkpoint(position, wrong_hash))
        assert (wrong.value.path, wrong.value.offset) == (
            str(segment),
            _commit_record_of(segment, position),
        )


def _hash_at(directory: Path, position: int) -> str:
    """The chain hash at ``position`` as the commit record of the batch ending there holds it."""
    for segment in sorted(directory.glob("*.log")):
        try:
            offset = _commit_record_of(segment, position)
        except AssertionError:
            continue
        return segment.read_bytes()[offset + 29 : offset + 61].hex()
    raise AssertionError(f"no batch ends at position {position}")


def test_a_checkpoint_at_position_zero_holds_only_with_the_zero_hash(tmp_path: Path) -> None:
    write(tmp_path, HISTORY[:3])
    verify_checkpoint(tmp_path, Checkpoint(0, "0" * 64))
    with pytest.raises(JournalCorrupted, match="a checkpoint at position 0 has the zero hash"):
        verify_checkpoint(tmp_path, Checkpoint(0, "1" * 64))


def test_a_checkpoint_beyond_a_missing_segment_names_the_segment_after_the_gap(
    tmp_path: Path,
) -> None:
    write(tmp_path, HISTORY)
    anchored = export_checkpoint(tmp_path)
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) >= 2
    segments[0].unlink()
    with pytest.raises(
        JournalCorrupted, match=r"segment starts at position \d+, expected 1"
    ) as gap:
        verify_checkpoint(tmp_path, anchored)
    assert (gap.value.path, gap.value.offset) == (str(segments[1]), 0)


def test_a_checkpoint_at_a_position_inside_a_batch_does_not_hold(tmp_path: Path) -> None:
    write(tmp_path, HISTORY[:4])  # positions 1, 2-3, 4, 5-6
    forged = Checkpoint(2, export_checkpoint(tmp_path).chain_hash)
    with pytest.raises(JournalCorrupted, match="no commit batch ends at the checkpoint's position"):
        verify_checkpoint(tmp_path, forged)


def test_the_checkpoint_command_prints_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, HISTORY[:5])
    assert cli(["checkpoint", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    assert Checkpoint.parse(token) == export_checkpoint(tmp_path)
    first = sorted(tmp_path.glob("*.log"))[0]
    data = bytearray(first.read_bytes())
    data[100] ^= 0x10
    first.write_bytes(bytes(data))
    assert cli(["checkpoint", str(tmp_path)]) == 1
    assert "damaged:" in capsys.readouterr().err


@pytest.mark.parametrize("size", [0, 10, 63])
def test_a_torn_segment_creation_is_not_part_of_a_checkpoint(tmp_path: Path, size: int) -> None:
    write(tmp_path, HISTORY)
    without_clean_close(tmp_path)  # The torn creation below stands for a crash.
    before = export_checkpoint(tmp_path)
    segments = len(list(tmp_path.glob("*.log")))
    # A roll the crash interrupted: the next segment, without its whole header (64 bytes).
    torn = tmp_path / f"{before.position + 1:020d}.log"
    torn.write_bytes(b"\x00" * size)
    assert export_checkpoint(tmp_path) == before
    verify_checkpoint(tmp_path, before)
    with pytest.raises(JournalCorrupted, match=r"before the checkpoint at position .*was cut"):
        verify_checkpoint(tmp_path, Checkpoint(before.position + 1, before.chain_hash))
    # A small last file by any other name is no roll's: refused, as opening refuses it.
    stray = torn.rename(tmp_path / f"{before.position + 5:020d}.log")
    with pytest.raises(JournalCorrupted, match=rf"{stray.name} .*named for position .*Move it"):
        export_checkpoint(tmp_path)
    stray.unlink()
    assert export_checkpoint(tmp_path) == before
    assert len(list(tmp_path.glob("*.log"))) == segments  # Nothing was removed or created.


@pytest.mark.parametrize(("first", "error"), [(1, JournalNotFound), (2, JournalCorrupted)])
def test_a_lone_torn_segment_creation_has_no_history_to_checkpoint(
    tmp_path: Path, first: int, error: type[Exception]
) -> None:
    (tmp_path / f"{first:020d}.log").write_bytes(b"")
    with pytest.raises(error, match="holds no journal yet" if first == 1 else "named for"):
        export_checkpoint(tmp_path)


# -- a keyed journal with no batch yet ----------------------------------------------------------


def test_a_keyed_journal_without_batches_refuses_another_key(tmp_path: Path) -> None:
    """The chain checks a key only against a batch; the header's key check covers the rest."""
    write(tmp_path, [], key=KEY)
    with pytest.raises(JournalCorrupted, match="written with another key") as refused:
        anyio.run(_open, tmp_path, b"w" * 32)
    assert (refused.value.path, refused.value.offset) == (
        str(tmp_path / "00000000000000000001.log"),
        56,
    )
    problem = verify_journal(tmp_path, key=b"w" * 32).problem
    assert problem is not None
    assert (problem.offset, problem.reason) == (
        56,
        "the journal was written with another key (the key check in the segment header "
        "differs); open it with the key it was written with",
    )
    anyio.run(_open, tmp_path, KEY)
    write(tmp_path, HISTORY, key=KEY)
    assert verify_journal(tmp_path, key=KEY).intact


def test_a_segment_header_without_a_key_check_is_still_read(tmp_path: Path) -> None:
    """Headers written before the key check was kept: flag bit 1 clear, the field zero."""
    write(tmp_path, HISTORY, key=KEY)
    without_clean_close(tmp_path)
    for index_file in tmp_path.glob("*.idx"):
        index_file.unlink()
    for segment in tmp_path.glob("*.log"):
        raw = bytearray(segment.read_bytes())
        assert raw[10:12] == b"\x03\x00"  # Keyed, with a key check.
        raw[10:12] = b"\x01\x00"
        raw[56:60] = bytes(4)
        raw[60:64] = zlib.crc32(bytes(raw[:60])).to_bytes(4, "little")
        segment.write_bytes(bytes(raw))
    assert verify_journal(tmp_path, key=KEY).intact
    anyio.run(_open, tmp_path, KEY)
    assert verify_journal(tmp_path, key=KEY).intact


def _drop_key_checks(directory: Path) -> None:
    """Make every segment header one written before the key check was kept."""
    for segment in directory.glob("*.log"):
        raw = bytearray(segment.read_bytes())
        raw[10:12] = b"\x01\x00"
        raw[56:60] = bytes(4)
        raw[60:64] = zlib.crc32(bytes(raw[:60])).to_bytes(4, "little")
        segment.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("appended", "key_check"),
    [([], True), (HISTORY, True), (HISTORY, False)],
    ids=["no batch", "batches", "batches, header without a key check"],
)
def test_a_key_given_with_a_trailing_newline_is_said_to_have_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], appended: list[int], key_check: bool
) -> None:
    """The key of a journal, read from a file that 'echo' wrote: the newline is named as the
    difference, rather than left to look like a wrong key or an altered batch."""
    write(tmp_path / "journal", appended, KEY)
    if not key_check:
        without_clean_close(tmp_path / "journal")
        for index_file in (tmp_path / "journal").glob("*.idx"):
            index_file.unlink()
        _drop_key_checks(tmp_path / "journal")
    for line_end in (b"\n", b"\r\n"):
        problem = verify_journal(tmp_path / "journal", key=KEY + line_end).problem
        assert problem is not None
        assert problem.reason.endswith(
            "; the key given ends with a newline, and without it is the journal's key: a key is "
            "its exact bytes, so give it without the newline (a key file written by 'echo' ends "
            "with one)"
        )
    with pytest.raises(JournalCorrupted, match="the key given ends with a newline"):
        anyio.run(_open, tmp_path / "journal", KEY + b"\n")
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    assert cli(["verify", str(tmp_path / "journal"), "--key-file", str(key_file)]) == 1
    assert "the key given ends with a newline" in capsys.readouterr().err
    # Another key that ends with a newline is not said to be the journal's without it.
    problem = verify_journal(tmp_path / "journal", key=b"w" * 32 + b"\n").problem
    assert problem is not None
    assert "newline" not in problem.reason
    assert verify_journal(tmp_path / "journal", key=KEY).intact
