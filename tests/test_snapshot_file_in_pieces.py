"""The snapshot file is read in pieces: a huge one takes no more memory than a small one.

Its size has no limit (saves append for as long as the journal runs), so a sparse file of
many GiB at its name (a file extended by mistake, a damaged file system) cannot be refused
by its size: opening and the tools read it through a window, keep only where each snapshot
is, and skip the holes where they search for a valid record after a bad one. Each reader runs
in a child whose memory is capped well below the file's size, so that a regression (the file
read whole) fails here rather than disturb the machine. How the window moves along the file
is checked against a window that holds the whole file, for any file and any window size.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, NewEvent, _snapshot_scan
from journals._codec import encode_snapshot, encode_snapshot_file_header
from journals._snapshot_scan import scan_snapshot_file

from .journal_files import without_clean_close
from .memory_capped import run_capped

HUGE = 8 * 2**30
"""The snapshot file's size once extended: sparse, so it takes no room on the disk."""


async def _write(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        await journal.append("s-1", [NewEvent("Counted", {"n": 1})], expected_version=0)
        await journal.save_snapshot("s-1", 1, {"n": 1})


# Each way the library reads a journal, then opening it: what each said.
READERS = textwrap.dedent(
    """
    import json, sys, anyio
    from journals import FileJournal, export_checkpoint, read_journal_files, verify_journal

    path = sys.argv[1]

    def verify():
        report = verify_journal(path)
        if report.problem is not None:
            raise RuntimeError(f"{report.problem.offset}: {report.problem.reason}")
        return [[tail.path, tail.offset] for tail in report.torn_tails]

    async def open_journal():
        async with FileJournal(path) as journal:
            snapshot = await journal.load_snapshot("s-1")
            tails = journal.recovery_report.torn_tails
            return [[[tail.offset, tail.bytes_cut] for tail in tails], snapshot.data]

    readers = {
        "verify_journal": verify,
        "read_journal_files": lambda: len(list(read_journal_files(path))),
        "export_checkpoint": lambda: export_checkpoint(path).position,
        "open": lambda: anyio.run(open_journal),
    }
    said = {}
    for name, read in readers.items():
        try:
            said[name] = read()
        except Exception as error:
            said[name] = f"{type(error).__name__}: {error}"
    print(json.dumps(said))
    """
)


def _journal_with_a_huge_snapshot_file(tmp_path: Path) -> tuple[Path, Path, int]:
    directory = tmp_path / "journal"
    anyio.run(_write, directory)
    without_clean_close(directory)  # As after a crash: opening may cut a torn tail.
    snapshots = directory / "snapshots.dat"
    size = snapshots.stat().st_size
    os.truncate(snapshots, HUGE)
    return directory, snapshots, size


def test_a_huge_snapshot_file_of_zeros_after_its_snapshots_is_a_torn_tail(
    tmp_path: Path,
) -> None:
    directory, snapshots, size = _journal_with_a_huge_snapshot_file(tmp_path)
    done = run_capped("-c", READERS, str(directory))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    tail = [size, HUGE - size]
    assert said == {
        "verify_journal": [[str(snapshots), size]],
        "read_journal_files": 1,
        "export_checkpoint": 1,
        "open": [[tail], {"n": 1}],
    }
    assert snapshots.stat().st_size == size  # Opening cut the zeros.


def test_a_snapshot_after_gigabytes_of_zeros_makes_them_damage(tmp_path: Path) -> None:
    directory, snapshots, size = _journal_with_a_huge_snapshot_file(tmp_path)
    with snapshots.open("ab") as file:  # A valid record at the end of the hole.
        file.write(encode_snapshot(1, 0, b"s-1", b"", b"{}"))
    done = run_capped("-c", READERS, str(directory))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    refusal = f"at byte offset {size}: record length 0 is out of bounds"
    assert said["verify_journal"] == f"RuntimeError: {size}: record length 0 is out of bounds"
    for name in ("read_journal_files", "export_checkpoint", "open"):
        assert said[name].startswith(f"JournalCorrupted: {snapshots} {refusal}"), said[name]
    assert snapshots.stat().st_size > HUGE  # Refused: nothing cut.


# -- the window, against one that holds the whole file ----------------------------------------

_RECORDS = [
    encode_snapshot(version, 7, stream, metadata, data, key)
    for version, stream, metadata, data in [
        (1, b"a", b"", b"1"),
        (2, b"stream-b", b'{"m":1}', b'{"state":"' + b"x" * 40 + b'"}'),
        (3, b"a", b"", b"[" + b"0," * 30 + b"0]"),
    ]
    for key in (None, b"k")  # Records of kind 3, and of kind 4 (with a MAC).
]


@st.composite
def _snapshot_files(draw: st.DrawFn) -> bytes:
    """A header and records, then damage: bytes changed, cut off, or appended."""
    contents = bytearray(encode_snapshot_file_header())
    for _ in range(draw(st.integers(0, 8))):
        contents += draw(st.sampled_from(_RECORDS))
    for _ in range(draw(st.integers(0, 3))):
        damage = draw(st.sampled_from(["change", "cut", "append"]))
        if damage == "change" and contents:
            at = draw(st.integers(0, len(contents) - 1))
            contents[at] = draw(st.integers(0, 255))
        elif damage == "cut":
            del contents[draw(st.integers(0, len(contents))) :]
        else:
            contents += draw(st.binary(max_size=60) | st.sampled_from(_RECORDS))
    return bytes(contents)


def _scan(path: Path, window_bytes: int) -> Any:
    """What a scan with a window of ``window_bytes`` made of the file: its snapshots and torn
    tail, or its refusal."""
    found: list[tuple[str, int, int, int]] = []

    def remember(stream_id: str, version: int, offset: int, length: int, mac: str) -> None:
        found.append((stream_id, version, offset, length))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_snapshot_scan, "WINDOW_BYTES", window_bytes)
        fd = os.open(path, os.O_RDONLY)
        try:
            size, tail = scan_snapshot_file(fd, os.fstat(fd).st_size, str(path), remember)
        except JournalCorrupted as error:
            return ("refused", error.offset, str(error))
        finally:
            os.close(fd)
    return (found, size, tail)


@settings(max_examples=300, deadline=None)
@given(contents=_snapshot_files(), window_bytes=st.integers(1, 200))
def test_any_window_finds_what_a_window_of_the_whole_file_finds(
    tmp_path_factory: pytest.TempPathFactory, contents: bytes, window_bytes: int
) -> None:
    path = tmp_path_factory.mktemp("window") / "snapshots.dat"
    path.write_bytes(contents)
    whole = _scan(path, len(contents) + 1)
    assert _scan(path, window_bytes) == whole
