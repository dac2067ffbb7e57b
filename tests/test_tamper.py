"""Tamper evidence: damage journal files on purpose; ``eventfold verify`` and opening name where.

The records are located and re-framed here from the byte layout in docs/journal-format.md
alone (length, CRC-32 over length and body, kind byte), so these tests also pin that document.
A forger who re-frames a record gets its checksum right; only the hash chain stops them.
Opening checks as much as ``eventfold verify`` does (sealed segments' chains are recomputed),
so every case is refused on opening too, at the same file and offset.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalCorrupted, NewEvent
from runtime._cli import main as cli

HEADER_BYTES = 64
KIND_EVENT, KIND_COMMIT = 1, 2
SEGMENT_BYTES_MAX = 4096


@dataclass(frozen=True)
class Frame:
    offset: int
    end: int
    kind: int

    @property
    def body(self) -> slice:
        return slice(self.offset + 8, self.end)


def frames(data: bytes) -> list[Frame]:
    found, offset = [], HEADER_BYTES
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        end = offset + 8 + length
        found.append(Frame(offset, end, data[offset + 8]))
        offset = end
    return found


def reframe(body: bytes) -> bytes:
    """Frame a body with a correct length and checksum, as a forger would."""
    length = struct.pack("<I", len(body))
    return length + struct.pack("<I", zlib.crc32(body, zlib.crc32(length))) + body


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


async def _fill(directory: Path, key: bytes | None, tag: str) -> None:
    # Appends awaited one by one: every append is its own commit batch.
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
        for number in range(40):
            events = [
                NewEvent("Noted", {"n": number, "i": i, "tag": tag, "pad": "p" * 60})
                for i in range(1 + number % 3)
            ]
            await journal.append(f"s-{number % 4}", events, expected_version=None)


def build(directory: Path, key: bytes | None = None, tag: str = "a") -> list[Path]:
    anyio.run(_fill, directory, key, tag)
    found = segments(directory)
    assert len(found) >= 3, "the tests need sealed segments and a last one"
    return found


async def _open(directory: Path, key: bytes | None) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key):
        pass


def verify_names(
    directory: Path, segment: Path, offset: int, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``eventfold verify`` exits 1 and names the file, the byte offset and the reason."""
    assert cli(["verify", str(directory)]) == 1
    error = capsys.readouterr().err
    assert f"damaged: {segment} at byte offset {offset}: " in error
    assert reason in error


def opening_refuses(directory: Path, segment: Path, offset: int, reason: str) -> None:
    with pytest.raises(JournalCorrupted, match=reason) as raised:
        anyio.run(_open, directory, None)
    assert (Path(raised.value.path), raised.value.offset) == (segment, offset)


def test_an_intact_journal_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path)
    assert cli(["verify", str(tmp_path)]) == 0
    assert "intact:" in capsys.readouterr().out


def test_a_changed_payload_byte_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = build(tmp_path)[0]
    data = bytearray(first.read_bytes())
    target = frames(bytes(data))[3]
    data[target.end - 5] ^= 0x01
    first.write_bytes(bytes(data))
    verify_names(tmp_path, first, target.offset, "record checksum mismatch", capsys)
    opening_refuses(tmp_path, first, target.offset, "checksum mismatch")


def test_a_changed_payload_with_a_correct_checksum_breaks_the_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = build(tmp_path)[0]
    data = first.read_bytes()
    found = frames(data)
    target = found[3]
    body = bytearray(data[target.body])
    body[-5] ^= 0x01
    forged = data[: target.offset] + reframe(bytes(body)) + data[target.end :]
    first.write_bytes(forged)
    commit = next(f for f in found[3:] if f.kind == KIND_COMMIT)
    verify_names(tmp_path, first, commit.offset, "chain hash mismatch", capsys)
    opening_refuses(tmp_path, first, commit.offset, "chain hash mismatch")


def test_a_deleted_record_is_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = build(tmp_path)[0]
    data = first.read_bytes()
    events = [f for f in frames(data) if f.kind == KIND_EVENT]
    gone = events[4]
    first.write_bytes(data[: gone.offset] + data[gone.end :])
    verify_names(tmp_path, first, gone.offset, "expected", capsys)
    opening_refuses(tmp_path, first, gone.offset, "expected")


def test_two_swapped_records_are_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = build(tmp_path)[0]
    data = first.read_bytes()
    found = frames(data)
    # Two adjacent event records of one batch (a batch of several events).
    index = next(
        i for i in range(len(found) - 1) if found[i].kind == found[i + 1].kind == KIND_EVENT
    )
    a, b = found[index], found[index + 1]
    swapped = data[: a.offset] + data[b.offset : b.end] + data[a.offset : a.end] + data[b.end :]
    first.write_bytes(swapped)
    verify_names(tmp_path, first, a.offset, "event position", capsys)
    opening_refuses(tmp_path, first, a.offset, "event position")


def test_a_forged_record_with_a_correct_checksum_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged event inserted at the end of a batch, framed and numbered correctly.

    It takes the next position and its stream's next version, and the commit record is
    re-framed to count it too: only the chain hash, which the forger cannot match without
    recomputing every later batch, gives it away.
    """
    first = build(tmp_path)[0]
    data = first.read_bytes()
    found = frames(data)
    commit = found[next(i for i, f in enumerate(found) if f.kind == KIND_COMMIT)]
    last_event = found[found.index(commit) - 1]
    body = bytearray(data[last_event.body])
    position = struct.unpack_from("<Q", body, 1)[0]
    version = struct.unpack_from("<Q", body, 9)[0]
    struct.pack_into("<QQ", body, 1, position + 1, version + 1)
    kind, first_position, _, count, chain = struct.unpack("<BQQI32s", data[commit.body])
    forged_commit = reframe(
        struct.pack("<BQQI32s", kind, first_position, position + 1, count + 1, chain)
    )
    forged = data[: commit.offset] + reframe(bytes(body)) + forged_commit + data[commit.end :]
    first.write_bytes(forged)
    forged_commit_offset = commit.offset + (last_event.end - last_event.offset)
    verify_names(tmp_path, first, forged_commit_offset, "chain hash mismatch", capsys)
    opening_refuses(tmp_path, first, forged_commit_offset, "chain hash mismatch")


def test_bytes_cut_from_the_middle_of_a_segment_are_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = build(tmp_path)[-1]
    data = last.read_bytes()
    found = frames(data)
    middle = found[len(found) // 2]
    # Cut from inside one record to inside a later one; valid batches follow the cut.
    cut_from, cut_to = middle.offset + 10, found[len(found) // 2 + 2].offset + 10
    last.write_bytes(data[:cut_from] + data[cut_to:])
    with pytest.raises(JournalCorrupted, match="followed by a valid commit record") as raised:
        anyio.run(_open, tmp_path, None)
    assert (Path(raised.value.path), raised.value.offset) == (last, middle.offset)
    verify_names(tmp_path, last, middle.offset, "followed by a valid commit record", capsys)


def test_a_sealed_segment_truncated_in_the_middle_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = build(tmp_path)[0]
    data = first.read_bytes()
    middle = frames(data)[len(frames(data)) // 2]
    first.write_bytes(data[: middle.offset + 3])
    verify_names(tmp_path, first, middle.offset, "partial record", capsys)
    opening_refuses(tmp_path, first, middle.offset, "partial record")


def test_a_replaced_segment_is_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A segment from another journal of the same shape: every record is valid on its own."""
    ours = build(tmp_path / "ours")
    theirs = build(tmp_path / "theirs", tag="b")
    assert [p.name for p in ours] == [p.name for p in theirs]
    ours[1].write_bytes(theirs[1].read_bytes())
    verify_names(tmp_path / "ours", ours[1], 24, "previous hash", capsys)
    opening_refuses(tmp_path / "ours", ours[1], 24, "previous hash")


def test_a_replaced_first_segment_is_found_at_the_next_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = build(tmp_path / "ours")
    theirs = build(tmp_path / "theirs", tag="b")
    ours[0].write_bytes(theirs[0].read_bytes())
    # The first segment is self-consistent; the chain breaks where the second one links to it.
    verify_names(tmp_path / "ours", ours[1], 24, "previous hash", capsys)
    opening_refuses(tmp_path / "ours", ours[1], 24, "previous hash")


def test_opening_refuses_a_reframed_payload_in_the_last_segment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = build(tmp_path)[-1]
    data = last.read_bytes()
    found = frames(data)
    target = next(f for f in found if f.kind == KIND_EVENT)
    body = bytearray(data[target.body])
    body[-5] ^= 0x01
    last.write_bytes(data[: target.offset] + reframe(bytes(body)) + data[target.end :])
    commit = next(f for f in found if f.kind == KIND_COMMIT and f.offset > target.offset)
    verify_names(tmp_path, last, commit.offset, "chain hash mismatch", capsys)
    opening_refuses(tmp_path, last, commit.offset, "chain hash mismatch")
