"""The read-only functions refuse what opening refuses, and check their key as opening does.

``export_checkpoint``, ``read_journal_files`` (``eventfold inspect``) and ``verify_checkpoint``
read a journal without opening it. Each must refuse the history opening refuses: a damaged or
cut end after a clean close (durability.md G15), a snapshot above its stream's last event
(G7), a small segment file that no roll created (G10); none may hash with an empty key, which
hashes as no key at all (G9).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from journals import (
    Checkpoint,
    FileJournal,
    JournalCorrupted,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_checkpoint,
    verify_journal,
)

from .journal_files import file_digests, open_and_close, without_clean_close

SEGMENT_BYTES_MAX = 4096
KEY = b"k" * 32


def _write(directory: Path, count: int = 40, *, key: bytes | None = None) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
            for index in range(count):
                data = {"i": index, "padding": "t" * 100}
                await journal.append("s", [NewEvent("T", data)], expected_version=index)
            await journal.save_snapshot("s", count, {"state": count})

    anyio.run(write)


def _last_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def _commit_ends(data: bytes) -> list[int]:
    """Offsets just past each commit record of a segment (frames: length, CRC, kind...)."""
    ends, offset = [], 64
    while offset + 8 <= len(data):
        end = offset + 8 + int.from_bytes(data[offset : offset + 4], "little")
        if data[offset + 8] == 2:  # KIND_COMMIT
            ends.append(end)
        offset = end
    return ends


def _cut_last_batch(directory: Path) -> None:
    segment = _last_segment(directory)
    data = segment.read_bytes()
    segment.write_bytes(data[: _commit_ends(data)[-2]])


def _flip_a_byte_of_the_last_event(directory: Path) -> None:
    segment = _last_segment(directory)
    data = bytearray(segment.read_bytes())
    data[_commit_ends(bytes(data))[-1] - 61 - 3] ^= 0xFF  # In the last event, before its commit.
    segment.write_bytes(bytes(data))


def _open(directory: Path) -> None:
    open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)


Tool = Callable[[Path], object]
TOOLS: dict[str, Tool] = {
    "export_checkpoint": export_checkpoint,
    "read_journal_files": lambda directory: list(read_journal_files(directory)),
}


def _damage_after_a_clean_close(directory: Path, damage: str) -> None:
    if damage == "last batch cut at a batch boundary":
        _cut_last_batch(directory)
    else:
        _flip_a_byte_of_the_last_event(directory)


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("damage", ["last batch cut at a batch boundary", "a flipped byte"])
def test_the_tools_refuse_a_damaged_end_after_a_clean_close(
    tmp_path: Path, tool: str, damage: str
) -> None:
    _write(tmp_path)
    _damage_after_a_clean_close(tmp_path, damage)
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted, match="closed cleanly") as refused:
        TOOLS[tool](tmp_path)
    assert refused.value.path == str(_last_segment(tmp_path))
    assert file_digests(tmp_path) == before
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (refused.value.path, refused.value.offset)
    with pytest.raises(JournalCorrupted, match="closed cleanly"):
        _open(tmp_path)


@pytest.mark.parametrize("tool", TOOLS)
def test_the_tools_refuse_a_cut_end_under_a_snapshot_after_a_crash(
    tmp_path: Path, tool: str
) -> None:
    _write(tmp_path)
    without_clean_close(tmp_path)
    _cut_last_batch(tmp_path)  # The snapshot at version 40 now stands above the events.
    with pytest.raises(JournalCorrupted, match="events the snapshot covers are missing"):
        TOOLS[tool](tmp_path)
    with pytest.raises(JournalCorrupted, match="events the snapshot covers are missing"):
        _open(tmp_path)


def test_reading_yields_nothing_of_a_last_segment_whose_end_opening_refuses(
    tmp_path: Path,
) -> None:
    _write(tmp_path)
    _flip_a_byte_of_the_last_event(tmp_path)
    read: list[int] = []
    with pytest.raises(JournalCorrupted, match="closed cleanly"):
        read.extend(event.position for event in read_journal_files(tmp_path))
    first_of_last = int(_last_segment(tmp_path).name[:20])
    assert read == list(range(1, first_of_last))  # The sealed segments, then the refusal.


@pytest.mark.parametrize("tool", TOOLS)
def test_a_torn_tail_after_a_crash_is_left_out_not_refused(tmp_path: Path, tool: str) -> None:
    _write(tmp_path)
    without_clean_close(tmp_path)
    segment = _last_segment(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])  # The last commit record cut short: its batch is torn.
    Path(tmp_path / "snapshots.dat").unlink()
    TOOLS[tool](tmp_path)
    assert export_checkpoint(tmp_path).position == 39
    assert [event.position for event in read_journal_files(tmp_path)][-1] == 39


def test_verify_checkpoint_refuses_a_small_segment_file_no_roll_created(tmp_path: Path) -> None:
    _write(tmp_path)
    checkpoint = export_checkpoint(tmp_path)
    stray = tmp_path / f"{int(_last_segment(tmp_path).name[:20]) + 1:020d}.log"
    stray.write_bytes(b"")
    with pytest.raises(JournalCorrupted, match="a crash while rolling leaves only a segment"):
        verify_checkpoint(tmp_path, checkpoint)
    with pytest.raises(JournalCorrupted, match="a crash while rolling leaves only a segment"):
        _open(tmp_path)
    assert stray.exists()


def test_verify_checkpoint_accepts_the_torn_segment_a_roll_creates(tmp_path: Path) -> None:
    _write(tmp_path)
    without_clean_close(tmp_path)
    checkpoint = export_checkpoint(tmp_path)
    (tmp_path / f"{checkpoint.position + 1:020d}.log").write_bytes(b"EVFLD")
    verify_checkpoint(tmp_path, checkpoint)
    assert export_checkpoint(tmp_path) == checkpoint


# -- keys ----------------------------------------------------------------------------------------


def _forge_keyed_flag(directory: Path) -> None:
    """Set the keyed flag in every segment header of an unkeyed journal: no key is needed."""
    for index_file in directory.glob("*.idx"):
        index_file.unlink()
    for segment in directory.glob("*.log"):
        data = bytearray(segment.read_bytes())
        struct.pack_into("<H", data, 10, 1)
        struct.pack_into("<I", data, 60, zlib.crc32(bytes(data[:60])))
        segment.write_bytes(bytes(data))


KeyedTool = Callable[[Path, bytes], object]
KEYED_TOOLS: dict[str, KeyedTool] = {
    "verify_journal": lambda directory, key: verify_journal(directory, key=key),
    "read_journal_files": lambda directory, key: list(read_journal_files(directory, key=key)),
    "export_checkpoint": lambda directory, key: export_checkpoint(directory, key=key),
    "verify_checkpoint": lambda directory, key: verify_checkpoint(
        directory, Checkpoint(1, "00" * 32), key=key
    ),
    "verify_checkpoint at 0": lambda directory, key: verify_checkpoint(
        directory, Checkpoint(0, "00" * 32), key=key
    ),
}


@pytest.mark.parametrize("tool", KEYED_TOOLS)
def test_an_empty_key_is_refused_not_hashed_as_no_key(tmp_path: Path, tool: str) -> None:
    _write(tmp_path)
    without_clean_close(tmp_path)
    _forge_keyed_flag(tmp_path)  # A chain computed without any key, flagged as keyed.
    with pytest.raises(ValueError, match="a key is 1 to 64 bytes long, not 0"):
        KEYED_TOOLS[tool](tmp_path, b"")


@pytest.mark.parametrize("tool", KEYED_TOOLS)
def test_a_key_longer_than_64_bytes_is_a_value_error_that_says_so(
    tmp_path: Path, tool: str
) -> None:
    _write(tmp_path, key=KEY)
    key = b"ab" * 32 + b"\n"  # 64 hex digits and the newline an 'echo' or 'openssl' adds.
    with pytest.raises(
        ValueError, match="a key is 1 to 64 bytes long, not 65 \\(it ends with a newline"
    ):
        KEYED_TOOLS[tool](tmp_path, key)


def test_the_file_journal_refuses_the_same_keys(tmp_path: Path) -> None:
    for key in (b"", b"x" * 65):
        with pytest.raises(ValueError, match=f"a key is 1 to 64 bytes long, not {len(key)}"):
            FileJournal(tmp_path, key=key)


STR_KEY = "a key is bytes, 1 to 64 of them, not str \\(pass the key's bytes"


@pytest.mark.parametrize("tool", KEYED_TOOLS)
def test_a_str_key_is_refused_as_a_key_not_hashed(tmp_path: Path, tool: str) -> None:
    _write(tmp_path, key=KEY)
    before = file_digests(tmp_path)
    with pytest.raises(ValueError, match=STR_KEY):
        KEYED_TOOLS[tool](tmp_path, KEY.decode())  # type: ignore[arg-type]
    assert file_digests(tmp_path) == before


@pytest.mark.parametrize("key", ["secret", 5, 1.5, ["s"]])
def test_the_file_journal_refuses_a_key_that_is_not_bytes_before_it_creates_anything(
    tmp_path: Path, key: object
) -> None:
    directory = tmp_path / "journal"
    with pytest.raises(
        ValueError, match=f"a key is bytes, 1 to 64 of them, not {type(key).__name__}"
    ):
        FileJournal(directory, key=key)  # type: ignore[arg-type]
    assert not directory.exists()


def test_a_bytes_like_key_is_copied_when_the_journal_is_made(tmp_path: Path) -> None:
    key = bytearray(KEY)
    journal = FileJournal(
        tmp_path,
        segment_bytes_max=SEGMENT_BYTES_MAX,
        key=key,
    )
    key[:] = b"changed later"

    async def append() -> None:
        async with journal:
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)

    anyio.run(append)
    assert verify_journal(tmp_path, key=KEY).intact


def _a_directory_in_place_of(directory: Path, name: str) -> Path:
    if name == "closed-cleanly":
        without_clean_close(directory)
    elif name == "index file":
        first = sorted(directory.glob("*.log"))[0]
        (directory / f"{first.name[:20]}.idx").unlink()
        name = f"{first.name[:20]}.idx"
    elif name == "last segment's index file":
        last = sorted(directory.glob("*.log"))[-1]
        name = f"{last.name[:20]}.idx.tmp"
    path = directory / name
    path.mkdir()
    return path


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    "name",
    [
        "closed-cleanly",
        "closed-cleanly.tmp",
        "index file",
        "last segment's index file",
        "snapshots.dat.tmp",  # What a compaction writes, and opening removes.
    ],
)
def test_the_tools_refuse_a_directory_where_opening_refuses_one(
    tmp_path: Path, tool: str, name: str
) -> None:
    _write(tmp_path)
    in_place = _a_directory_in_place_of(tmp_path, name)
    with pytest.raises(JournalCorrupted, match="this is a directory") as refused:
        TOOLS[tool](tmp_path)
    assert refused.value.path == str(in_place)
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(in_place)
    with pytest.raises(JournalCorrupted, match="this is a directory") as refused_open:
        _open(tmp_path)
    assert refused_open.value.path == str(in_place)


@pytest.mark.parametrize("tool", TOOLS)
def test_a_missing_middle_segment_is_refused_by_the_tools_as_by_opening(
    tmp_path: Path, tool: str
) -> None:
    _write(tmp_path)
    segments = sorted(tmp_path.glob("*.log"))
    assert len(segments) >= 3
    missing = segments[1]
    missing.unlink()
    missing.with_suffix(".idx").unlink(missing_ok=True)
    after = segments[2]
    message = r"segment starts at position \d+, expected \d+: a segment is missing or misnamed"
    with pytest.raises(JournalCorrupted, match=message) as refused:
        TOOLS[tool](tmp_path)
    assert refused.value.path == str(after)
    with pytest.raises(JournalCorrupted, match=message) as opening:
        _open(tmp_path)
    assert opening.value.path == str(after)


# -- what verify counts and notes --------------------------------------------------------------


def test_verify_counts_events_batches_and_streams_of_the_durable_history(tmp_path: Path) -> None:
    async def write() -> None:
        async with FileJournal(tmp_path) as journal:
            await journal.append("a", [NewEvent("T", n) for n in range(3)], expected_version=0)
            await journal.append("b", [NewEvent("T", n) for n in range(2)], expected_version=0)

    anyio.run(write)
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert (report.segments, report.events, report.batches, report.streams) == (1, 5, 2, 2)


def test_verify_notes_a_missing_index_file_that_opening_rebuilds(tmp_path: Path) -> None:
    _write(tmp_path)
    first = sorted(tmp_path.glob("*.log"))[0]
    index_file = tmp_path / f"{first.name[:20]}.idx"
    index_file.unlink()
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert report.notes == (f"{index_file} is missing (opening rebuilds it)",)


def test_verify_refuses_a_directory_where_opening_would_rebuild_an_index_file(
    tmp_path: Path,
) -> None:
    # Opening rebuilds a missing index file through its temporary file, and refuses a
    # directory there; the other tools only read, so verify alone has to say so.
    _write(tmp_path)
    first = sorted(tmp_path.glob("*.log"))[0]
    (tmp_path / f"{first.name[:20]}.idx").unlink()
    in_place = tmp_path / f"{first.name[:20]}.idx.tmp"
    in_place.mkdir()
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert problem.path == str(in_place)
    assert "this is a directory" in problem.reason
    with pytest.raises(JournalCorrupted, match="this is a directory") as refused_open:
        _open(tmp_path)
    assert refused_open.value.path == str(in_place)


def test_verify_checks_no_snapshot_against_the_versions_of_a_scan_that_stopped(
    tmp_path: Path,
) -> None:
    """Damage in the first segment stops the scan with the stream's version short of its
    snapshot's: the snapshot file is still checked (for a torn tail), not against that version,
    which would report an intact snapshot as above its stream's last event."""
    _write(tmp_path)
    first = sorted(tmp_path.glob("*.log"))[0]
    assert first != _last_segment(tmp_path)
    data = bytearray(first.read_bytes())
    data[_commit_ends(bytes(data))[0] - 61 - 3] ^= 0xFF  # In the first event.
    first.write_bytes(bytes(data))
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert report.problem.path == str(first)
    assert report.notes == ()
