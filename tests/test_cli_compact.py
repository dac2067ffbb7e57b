"""``eventfold compact PATH``: compacts the snapshot file of a journal no process has open,
whatever the rule opening follows says, and closes it cleanly; refuses a journal held by
another process, a path without a journal (creating nothing), and what opening refuses."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalOwnedByAnotherUser, NewEvent, compact_journal_snapshots
from journals import _snapshot_retention as retention
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from runtime._cli import main

from .journal_files import file_digests, locked_by_another_process, without_clean_close

SNAPSHOTS = "snapshots.dat"
VERSIONS = 40
KEY = b"k" * 32


async def _write(directory: Path, key: bytes | None = None) -> None:
    """Two streams with a snapshot at every version: far less than opening compacts."""
    async with FileJournal(directory, key=key) as journal:
        for version in range(1, VERSIONS + 1):
            for stream in ("a", "b"):
                await journal.append(stream, [NewEvent("E", {})], expected_version=version - 1)
                await journal.save_snapshot(stream, version, {"at": version})


async def _newest(directory: Path, key: bytes | None = None) -> list[int | None]:
    async with FileJournal(directory, key=key) as journal:
        assert journal.recovery_report.snapshot_compaction is None  # Nothing left to drop.
        loaded = [await journal.load_snapshot(stream) for stream in ("a", "b")]
    return [None if snapshot is None else snapshot.data["at"] for snapshot in loaded]


@pytest.mark.parametrize("key", [None, KEY])
def test_compact_shrinks_the_snapshot_file_and_prints_before_and_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: bytes | None
) -> None:
    journal = tmp_path / "journal"
    anyio.run(_write, journal, key)
    before = os.path.getsize(journal / SNAPSHOTS)
    arguments = ["compact", str(journal)]
    if key is not None:
        (tmp_path / "key").write_bytes(key)
        arguments += ["--key-file", str(tmp_path / "key")]
    assert main(arguments) == 0
    after = os.path.getsize(journal / SNAPSHOTS)
    assert after < before
    captured = capsys.readouterr()
    assert captured.err == ""
    printed = re.fullmatch(
        rf"compacted {re.escape(str(journal))}: {2 * VERSIONS} snapshots \({before} bytes\) "
        rf"down to (\d+) \({after} bytes\)\n",
        captured.out,
    )
    assert printed is not None, captured.out
    kept = int(printed.group(1))
    assert 2 <= kept < 2 * VERSIONS
    assert (journal / CLEAN_CLOSE_FILE_NAME).exists()  # Closed cleanly.
    assert anyio.run(_newest, journal, key) == [VERSIONS, VERSIONS]
    # Again: nothing more to drop, and the file stays as it is.
    digests = file_digests(journal)
    assert main(arguments) == 0
    assert capsys.readouterr().out == (
        f"compacted {journal}: {kept} snapshots ({after} bytes) down to {kept} ({after} bytes)\n"
    )
    assert file_digests(journal)[SNAPSHOTS] == digests[SNAPSHOTS]


def test_compact_counts_from_the_file_as_found_when_opening_compacted_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    before = os.path.getsize(journal / SNAPSHOTS)
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)  # Opening compacts first.
    compaction = anyio.run(compact_journal_snapshots, journal)
    assert (compaction.snapshots_before, compaction.bytes_before) == (2 * VERSIONS, before)
    assert compaction.bytes_after == os.path.getsize(journal / SNAPSHOTS) < before


def test_compact_refuses_a_journal_open_in_another_process_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    digests = file_digests(journal)
    with locked_by_another_process(journal):
        assert main(["compact", str(journal)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: the journal in {journal} is open in another process; one journal directory "
        f"has one writer. Close it there first, or use 'eventfold verify' to read it.\n"
    )
    assert file_digests(journal) == digests


def test_compact_of_a_missing_or_empty_directory_creates_no_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    assert main(["compact", str(missing)]) == 1
    assert capsys.readouterr().err == f"error: no journal directory at {missing}\n"
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compact", str(empty)]) == 1
    assert capsys.readouterr().err == (
        f"error: {empty} holds no journal yet (no segment files, nothing else a journal "
        f"leaves), so it has no snapshots to compact; nothing was created there\n"
    )
    assert list(empty.iterdir()) == []
    (tmp_path / "file").write_bytes(b"")
    assert main(["compact", str(tmp_path / "file")]) == 1
    assert "exists and is not a directory" in capsys.readouterr().err


def test_compact_of_a_directory_holding_only_a_torn_first_segment_creates_no_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a crash leaves while a journal is first created: 'verify' and 'checkpoint' say
    # there is no journal yet, and opening would remove the file and create one.
    torn = tmp_path / "00000000000000000001.log"
    torn.write_bytes(b"junk")
    assert main(["compact", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path} holds no journal yet (only {torn}, a segment file cut short as "
        f"it was created), so it has no snapshots to compact; nothing was created there\n"
    )
    assert [path.name for path in tmp_path.iterdir()] == [torn.name]
    assert torn.read_bytes() == b"junk"


def test_compact_changes_nothing_in_a_journal_that_opening_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    raw = bytearray((journal / SNAPSHOTS).read_bytes())
    raw[-3] ^= 0x01  # The last snapshot, after a clean close: damage, not a torn tail.
    (journal / SNAPSHOTS).write_bytes(bytes(raw))
    digests = file_digests(journal)
    assert main(["compact", str(journal)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"damaged: {journal / SNAPSHOTS} at byte offset ")
    assert file_digests(journal) == digests
    # A keyed journal given no key is refused too.
    keyed = tmp_path / "keyed"
    anyio.run(_write, keyed, KEY)
    digests = file_digests(keyed)
    assert main(["compact", str(keyed)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert file_digests(keyed) == digests


def test_compact_without_a_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compact"])
    assert exited.value.code == 2
    assert "the following arguments are required: path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["compact", "somewhere", "--unknown"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (
            errno.EROFS,
            "compacting writes the journal's files, and their file system is mounted "
            "read-only: compact where it is mounted read-write",
        ),
        (errno.EACCES, "compacting writes the journal's files: run it as the user who owns them"),
    ],
)
def test_compact_says_a_file_it_may_not_write_is_not_a_read_it_failed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    hint: str,
) -> None:
    """As on a read-only mount, where reading the journal works ('eventfold verify' does) and
    only taking its lock for writing fails: not a read the user should be told to fix."""
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    lock = journal / "lock"
    open_file = os.open

    def refuse_writes_to_the_lock(path: str, flags: int, mode: int = 0o777) -> int:
        if os.fspath(path) == str(lock) and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(code, os.strerror(code), str(lock))
        return open_file(path, flags, mode)

    monkeypatch.setattr(os, "open", refuse_writes_to_the_lock)
    assert main(["compact", str(journal)]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot read or write {lock}: {os.strerror(code)} ({hint})\n"
    )


def test_compact_as_another_user_than_the_owner_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As 'sudo eventfold compact' on a service's journal: the new snapshot file and the
    clean-close record would be the other user's, 0600, and the service could not open its
    journal again."""
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    digests = file_digests(journal)
    owner = os.stat(journal / "00000000000000000001.log").st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    assert main(["compact", str(journal)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert re.fullmatch(
        rf"error: the journal in {re.escape(str(journal))} belongs to (user '.+' \()?uid "
        rf"{owner}\)?, and this runs as (user '.+' \()?uid {owner + 1}\)?: the files "
        r"compacting writes \(the new snapshot file, the clean-close record\) would belong to "
        rf".*uid {owner + 1}\)?, readable by it alone, and the journal's owner could no longer "
        r"open the journal\. Nothing was changed; compact as the owner \(sudo -u \S+ "
        rf"eventfold compact {re.escape(str(journal))}\)\n",
        captured.err,
    ), captured.err
    assert file_digests(journal) == digests
    with pytest.raises(JournalOwnedByAnotherUser):
        anyio.run(compact_journal_snapshots, journal)
    assert file_digests(journal) == digests


def test_what_opening_cut_is_a_note_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compacting opens the journal, which cuts a torn tail after a crash and logs it: the
    command printed the bare log message, a line unlike its others (none when logging was
    set up elsewhere, as under pytest)."""
    journal = tmp_path / "journal"
    anyio.run(_write, journal)
    without_clean_close(journal)
    segment = journal / "00000000000000000001.log"
    end = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x30\x00\x00")  # Part of a frame header: a torn tail of 3 bytes.
    assert main(["compact", str(journal)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"note: journal recovery cut a torn tail: {segment} at offset {end}, 3 bytes (partial "
        f"record: 3 bytes left, a frame header needs 8 at offset {end})\n"
    )
    assert captured.out.startswith(f"compacted {journal}: ")
    assert segment.stat().st_size == end
