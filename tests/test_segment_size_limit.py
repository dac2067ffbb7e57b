"""A segment file larger than any segment a journal writes is refused by its size, unread, and
an index file larger than its segment is not read but rebuilt (and a read that finds it wrong
blames it unread).

Opening and the tools read a segment whole; a sparse file of many GiB at a segment's name (a
file extended by mistake, a damaged file system) was read into memory before a single record
was checked: the process took gigabytes, or failed with a ``MemoryError`` traceback. Each
check runs in a child whose memory is capped well below the file's size, so that a regression
fails here rather than disturb the machine.
"""

from __future__ import annotations

import json
import os
import textwrap
from array import array
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, NewEvent
from journals._index import SegmentIndex, decode_index_file, encode_index_file
from journals._validation import SEGMENT_FILE_BYTES_MAX

from .journal_files import without_clean_close
from .memory_capped import run_capped

SIZE = SEGMENT_FILE_BYTES_MAX + 1
"""One byte more than any segment: sparse, so it takes no room on the disk."""


async def _write(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        for version in range(40):
            event = NewEvent("Counted", {"index": version, "padding": "x" * 100})
            await journal.append("s-1", [event], expected_version=version or None)


def _journal_with_a_huge_segment(tmp_path: Path, which: int) -> tuple[Path, Path]:
    directory = tmp_path / "journal"
    anyio.run(_write, directory)
    without_clean_close(directory)  # As after a crash: opening would cut a torn tail.
    segments = sorted(directory.glob("*.log"))
    assert len(segments) > 1
    segment = segments[which]
    os.truncate(segment, SIZE)
    return directory, segment


def _sizes(directory: Path) -> list[tuple[str, int]]:
    """Each file's name and size, but the lock's: each opener writes its process id there."""
    return sorted(
        (path.name, path.stat().st_size) for path in directory.iterdir() if path.name != "lock"
    )


# Each way the library reads a journal, answering what it raised.
READERS = textwrap.dedent(
    """
    import json, sys, anyio
    from journals import (
        FileJournal, export_checkpoint, read_journal_files, verify_journal, Checkpoint,
        verify_checkpoint,
    )

    path = sys.argv[1]

    async def open_journal():
        async with FileJournal(path):
            pass

    def verify():
        problem = verify_journal(path).problem
        raise RuntimeError(f"{problem.path} at byte offset {problem.offset}: {problem.reason}")

    readers = {
        "open": lambda: anyio.run(open_journal),
        "verify_journal": verify,
        "read_journal_files": lambda: list(read_journal_files(path)),
        "export_checkpoint": lambda: export_checkpoint(path),
        "verify_checkpoint": lambda: verify_checkpoint(path, Checkpoint.parse(sys.argv[2])),
    }
    said = {}
    for name, read in readers.items():
        try:
            read()
        except Exception as error:
            said[name] = f"{type(error).__name__}: {error}"
    print(json.dumps(said))
    """
)


@pytest.mark.parametrize("which", [0, -1], ids=["sealed", "last"])
def test_opening_and_every_reader_refuse_a_segment_no_journal_writes(
    tmp_path: Path, which: int
) -> None:
    directory, segment = _journal_with_a_huge_segment(tmp_path, which)
    before = _sizes(directory)
    # A checkpoint of the start of history: checking it reads the first segment.
    checkpoint = "eventfold-checkpoint/1/1/" + "0" * 64
    done = run_capped("-c", READERS, str(directory), checkpoint)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    refusal = (
        f"{segment} at byte offset {SEGMENT_FILE_BYTES_MAX}: the segment file is {SIZE:,} "
        f"bytes long, and a journal writes at most {SEGMENT_FILE_BYTES_MAX:,} bytes into one"
    )
    for name in ("open", "read_journal_files", "export_checkpoint"):
        assert said[name].startswith(f"JournalCorrupted: {refusal}"), (name, said[name])
    assert said["verify_journal"].startswith(f"RuntimeError: {refusal}")
    if which == 0:
        assert said["verify_checkpoint"].startswith(f"JournalCorrupted: {refusal}")
    # Nothing was cut or rewritten by the refused open.
    assert _sizes(directory) == before


@pytest.mark.parametrize("command", ["verify", "inspect", "checkpoint", "compact"])
def test_the_commands_say_the_segment_is_too_large(tmp_path: Path, command: str) -> None:
    directory, segment = _journal_with_a_huge_segment(tmp_path, -1)
    done = run_capped("-m", "runtime._cli", command, str(directory))
    assert done.returncode == 1
    # Before it, compact's opening logs that it opens again without the index files.
    assert done.stderr.splitlines()[-1].startswith(
        f"damaged: {segment} at byte offset {SEGMENT_FILE_BYTES_MAX}: the segment file is "
        f"{SIZE:,} bytes long"
    ), done.stderr
    assert "Traceback" not in done.stderr


# Opening, then verify_journal, of a journal with an index file larger than its segment.
INDEX_READERS = textwrap.dedent(
    """
    import json, sys, anyio
    from journals import FileJournal, verify_journal

    path = sys.argv[1]

    async def open_journal():
        async with FileJournal(path) as journal:
            return list(journal.recovery_report.rebuilt_indexes)

    rebuilt = anyio.run(open_journal)
    report = verify_journal(path)
    print(json.dumps({"rebuilt": rebuilt, "problem": str(report.problem), "notes": report.notes}))
    """
)


def test_an_index_file_larger_than_its_segment_is_rebuilt_unread(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    anyio.run(_write, directory)
    index_file = sorted(directory.glob("*.idx"))[0]
    segment_bytes = index_file.with_suffix(".log").stat().st_size
    os.truncate(index_file, 8 * 2**30)
    verified = run_capped("-m", "runtime._cli", "verify", str(directory))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(
        f"note: {index_file} is invalid: the index file is {8 * 2**30:,} bytes long, more "
        f"than its segment's {segment_bytes:,}, which no index file is (opening rebuilds it)\n"
    ), verified.stdout
    done = run_capped("-c", INDEX_READERS, str(directory))
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    # rebuilt_indexes names the segments whose index files were written again.
    assert said == {
        "rebuilt": [str(index_file.with_suffix(".log"))],
        "problem": "None",
        "notes": [],
    }
    assert index_file.stat().st_size < segment_bytes


# A read that finds the index file wrong names where it lists the position: reading it then.
BLAMING_READ = textwrap.dedent(
    """
    import os, sys, anyio
    from journals import FileJournal, JournalCorrupted

    path, index_file, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def read_a():
        async with FileJournal(path, segment_bytes_max=4096) as journal:
            os.truncate(index_file, size)  # Replaced since the journal opened it.
            try:
                [event async for event in journal.read("a")]
            except JournalCorrupted as error:
                print(f"{error.path} at {error.offset}")

    anyio.run(read_a)
    """
)


def test_a_read_blaming_an_index_file_larger_than_its_segment_does_not_read_it(
    tmp_path: Path,
) -> None:
    async def write() -> None:  # Streams a (positions 1, 3, 5) and b (2, 4, 6), then filler.
        async with FileJournal(tmp_path, segment_bytes_max=4096) as journal:
            for version in range(3):
                for stream in ("a", "b"):
                    event = NewEvent("T", {"stream": stream})
                    await journal.append(stream, [event], expected_version=version)
            for _ in range(20):
                filler = NewEvent("F", {"pad": "p" * 300})
                await journal.append("filler", [filler], expected_version=None)

    anyio.run(write)
    index_file = sorted(tmp_path.glob("*.idx"))[0]
    raw = index_file.read_bytes()
    loaded = decode_index_file(raw)
    segment = SegmentIndex(
        str(index_file.with_suffix(".log")),
        loaded.first_position,
        loaded.offsets,
        loaded.segment_bytes,
        loaded.final_hash,
        loaded.commits,
    )
    # Positions 3 and 4 swapped between a and b: the versions agree, opening uses it.
    lying = {**loaded.streams, b"a": array("Q", [1, 4, 5]), b"b": array("Q", [2, 3, 6])}
    index_file.write_bytes(encode_index_file(segment, loaded.segment_bytes, lying))
    done = run_capped("-c", BLAMING_READ, str(tmp_path), str(index_file), str(8 * 2**30))
    assert done.returncode == 0, done.stderr
    # Blamed at its start: where it lists the position is not known unread.
    assert done.stdout == f"{index_file} at 0\n"
