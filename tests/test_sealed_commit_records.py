"""Opening with a valid index file checks every byte of a sealed segment's commit records.

The index saves decoding events, never checking bytes (journal-format.md): a commit record's
frame length, checksum, kind, first/last/count and hash are all checked, so any change to one
is refused as opening without the index file refuses it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, NewEvent, verify_journal
from journals._codec import COMMIT_BODY, COMMIT_FRAME_BYTES, FRAME_BYTES, frame
from journals._index import decode_index_file

from .examples import examples
from .journal_files import open_and_close

SEGMENT_BYTES_MAX = 4096


def _write(directory: Path) -> None:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for index in range(24):
                await journal.append(
                    "s", [NewEvent("T", {"i": index, "pad": "x" * 200})] * 2, expected_version=None
                )

    anyio.run(write)


def _open(directory: Path) -> None:
    open_and_close(directory, segment_bytes_max=SEGMENT_BYTES_MAX)


@pytest.fixture(scope="module")
def journal_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("sealed")
    _write(directory)
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def _restore(directory: Path, files: dict[str, bytes]) -> Path:
    for path in directory.iterdir():
        path.unlink()
    for name, contents in files.items():
        (directory / name).write_bytes(contents)
    return directory / "00000000000000000001.log"


def _commit_offsets(files: dict[str, bytes]) -> list[int]:
    return list(decode_index_file(files["00000000000000000001.idx"]).commits)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_changed_byte_of_a_sealed_commit_record_is_refused(
    tmp_path: Path, journal_files: dict[str, bytes], data: st.DataObject
) -> None:
    commits = _commit_offsets(journal_files)
    offset = data.draw(st.sampled_from(commits)) + data.draw(st.integers(0, COMMIT_FRAME_BYTES - 1))
    flip = data.draw(st.integers(1, 255))
    segment = _restore(tmp_path, journal_files)
    contents = bytearray(segment.read_bytes())
    contents[offset] ^= flip
    segment.write_bytes(bytes(contents))
    with pytest.raises(JournalCorrupted, match=r"00000000000000000001\.log at byte offset"):
        _open(tmp_path)


@pytest.mark.parametrize("field", ["first", "last", "count"])
def test_a_reframed_commit_record_with_wrong_positions_is_refused(
    tmp_path: Path, journal_files: dict[str, bytes], field: str
) -> None:
    """A commit record with a valid checksum and hash, but positions that lie."""
    offset = _commit_offsets(journal_files)[1]
    segment = _restore(tmp_path, journal_files)
    contents = bytearray(segment.read_bytes())
    body = offset + FRAME_BYTES
    kind, first, last, count, hashed = COMMIT_BODY.unpack_from(contents, body)
    changed = {"first": (first + 1, last, count), "last": (first, last + 1, count)}.get(
        field, (first, last, count + 1)
    )
    forged = frame(COMMIT_BODY.pack(kind, *changed, hashed))
    contents[offset : offset + COMMIT_FRAME_BYTES] = forged
    segment.write_bytes(bytes(contents))
    assert (tmp_path / "00000000000000000001.idx").exists()  # The index path is taken.
    with pytest.raises(JournalCorrupted, match=r"00000000000000000001\.log"):
        _open(tmp_path)


def test_a_reframed_commit_record_with_another_hash_is_refused(
    tmp_path: Path, journal_files: dict[str, bytes]
) -> None:
    """A commit record with a valid checksum and right positions, but a hash that is not the
    one its batch hashes to: the index file checks out, the chain recomputed from the events
    too, so only comparing the record's own hash field finds it."""
    offset = _commit_offsets(journal_files)[1]
    segment = _restore(tmp_path, journal_files)
    contents = bytearray(segment.read_bytes())
    kind, first, last, count, hashed = COMMIT_BODY.unpack_from(contents, offset + FRAME_BYTES)
    forged_hash = bytes(byte ^ 0xFF for byte in hashed)
    contents[offset : offset + COMMIT_FRAME_BYTES] = frame(
        COMMIT_BODY.pack(kind, first, last, count, forged_hash)
    )
    segment.write_bytes(bytes(contents))
    assert (tmp_path / "00000000000000000001.idx").exists()  # The index path is taken.
    refusal = r"01\.log at byte offset \d+: chain hash mismatch"
    with pytest.raises(JournalCorrupted, match=refusal) as refused:
        _open(tmp_path)
    assert refused.value.offset == offset
    problem = verify_journal(tmp_path).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(segment), offset)


def test_an_intact_sealed_segment_opens_from_its_index(
    tmp_path: Path, journal_files: dict[str, bytes]
) -> None:
    _restore(tmp_path, journal_files)

    async def open_and_report() -> tuple[str, ...]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            return journal.recovery_report.rebuilt_indexes

    assert anyio.run(open_and_report) == ()  # No index needed rebuilding: all were trusted.
