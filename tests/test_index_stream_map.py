"""A sealed segment's index file that disagrees with its segment is never trusted for versions.

An index file is a cache (journal-format.md). One written with a valid checksum but a stream map
that gives a position of one stream to another must not make opening answer a wrong stream
version (which the next append would turn into a gap on disk), must not make opening blame the
intact segment, and ``verify_journal`` must say what opening does with it.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import journals._index_trust as index_trust
from journals import FileJournal, JournalCorrupted, NewEvent, read_journal_files, verify_journal
from journals._codec import decode_segment_header, encode_segment_header, frame
from journals._index import SegmentIndex, decode_index_file, encode_index_file

from .examples import examples
from .journal_files import file_digests

SEGMENT_BYTES_MAX = 4096
FIRST_INDEX = "00000000000000000001.idx"
FIRST_SEGMENT = "00000000000000000001.log"


def _write(directory: Path, *, b_in_last_segment: bool) -> None:
    """Streams a (positions 1, 3, 5) and b (2, 4, 6) in the first segment, then filler."""

    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            for version in range(3):
                for stream in ("a", "b"):
                    event = NewEvent("T", {"stream": stream, "version": version + 1})
                    await journal.append(stream, [event], expected_version=version)
            for _ in range(20):  # Three segments: two sealed, the last one active.
                await journal.append(
                    "filler", [NewEvent("F", {"pad": "p" * 300})], expected_version=None
                )
            if b_in_last_segment:
                await journal.append("b", [NewEvent("T", {"stream": "b"})], expected_version=3)

    anyio.run(write)
    assert len(list(directory.glob("*.log"))) == 3


def _forge_stream_map(directory: Path, streams: dict[bytes, list[int]]) -> bytes:
    """Rewrite the first index file with ``streams`` as its stream map and a valid checksum."""
    path = directory / FIRST_INDEX
    original = path.read_bytes()
    loaded = decode_index_file(original)
    segment = SegmentIndex(
        str(directory / FIRST_SEGMENT),
        loaded.first_position,
        loaded.offsets,
        loaded.segment_bytes,
        loaded.final_hash,
        loaded.commits,
    )
    forged = {stream: array("Q", positions) for stream, positions in streams.items()}
    path.write_bytes(encode_index_file(segment, loaded.segment_bytes, forged))
    return original


def _same_index(path: Path, original: bytes) -> bool:
    rebuilt, before = decode_index_file(path.read_bytes()), decode_index_file(original)
    return (rebuilt.offsets, rebuilt.streams, rebuilt.commits, rebuilt.final_hash) == (
        before.offsets,
        before.streams,
        before.commits,
        before.final_hash,
    )


def _listed_at(directory: Path, offset: int) -> int:
    """The position an index file lists at ``offset`` (a u64 of some stream's entry)."""
    return int.from_bytes((directory / FIRST_INDEX).read_bytes()[offset : offset + 8], "little")


def _true_map(directory: Path) -> dict[bytes, list[int]]:
    loaded = decode_index_file((directory / FIRST_INDEX).read_bytes())
    return {stream: list(positions) for stream, positions in loaded.streams.items()}


def _versions(directory: Path) -> tuple[dict[str, int], tuple[str, ...]]:
    async def versions() -> tuple[dict[str, int], tuple[str, ...]]:
        async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            found = {s: await journal.stream_version(s) for s in ("a", "b", "filler", "z")}
            return found, journal.recovery_report.rebuilt_indexes

    return anyio.run(versions)


def _versions_from_a_full_scan(directory: Path) -> dict[str, int]:
    """Every stream's version as the segments alone say (``read_journal_files`` scans them)."""
    versions = dict.fromkeys(("a", "b", "filler", "z"), 0)
    for recorded in read_journal_files(directory):
        versions[recorded.stream_id] = recorded.version
    return versions


@pytest.mark.parametrize("b_in_last_segment", [False, True], ids=["case B", "case A"])
def test_an_index_file_that_moves_a_position_to_another_stream_is_rebuilt(
    tmp_path: Path, b_in_last_segment: bool
) -> None:
    _write(tmp_path, b_in_last_segment=b_in_last_segment)
    truth = _true_map(tmp_path)
    lying = {**truth, b"a": [1, 3, 5, 6], b"b": [2, 4]}  # b's position 6 given to a.
    original = _forge_stream_map(tmp_path, lying)
    # verify says what opening does with it, and finds nothing else wrong.
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert report.notes == (
        f"{tmp_path / FIRST_INDEX} does not match its segment (opening rebuilds it)",
    )
    versions, rebuilt = _versions(tmp_path)
    b_version = 4 if b_in_last_segment else 3
    assert versions == {"a": 3, "b": b_version, "filler": versions["filler"], "z": 0}
    assert rebuilt == (str(tmp_path / FIRST_SEGMENT),)
    assert _same_index(tmp_path / FIRST_INDEX, original)  # Rebuilt from the segment.

    async def append_and_reread() -> list[int]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            result = await journal.append("a", [NewEvent("T", {})], expected_version=3)
            assert result.version == 4
            return [event.version async for event in journal.read("a")]

    assert anyio.run(append_and_reread) == [1, 2, 3, 4]
    (tmp_path / FIRST_INDEX).unlink()  # Stream a has no gap: a full scan agrees.
    assert _versions(tmp_path)[0]["a"] == 4
    assert verify_journal(tmp_path).problem is None


def test_an_index_file_that_swaps_positions_between_streams_is_blamed_by_reads(
    tmp_path: Path,
) -> None:
    """Counts that agree with the segment open (versions are right); reads name the index file."""
    _write(tmp_path, b_in_last_segment=False)
    truth = _true_map(tmp_path)
    _forge_stream_map(tmp_path, {**truth, b"a": [1, 4, 5], b"b": [2, 3, 6]})
    index_file = str(tmp_path / FIRST_INDEX)
    report = verify_journal(tmp_path)
    assert report.problem is not None
    assert report.problem.path == index_file
    # It names the first position given to the wrong stream, where the index file lists it.
    assert "it gives position 3 to stream 'b', the segment holds an event of stream 'a'" in (
        report.problem.reason
    )
    assert _listed_at(tmp_path, report.problem.offset) == 3
    assert "Opening uses it" in report.problem.reason
    assert "delete it" in report.problem.reason

    async def read_a() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            assert await journal.stream_version("a") == 3
            assert await journal.stream_version("b") == 3
            with pytest.raises(JournalCorrupted, match="the index file is wrong") as caught:
                [event async for event in journal.read("a")]
            assert caught.value.path == index_file
            assert _listed_at(tmp_path, caught.value.offset) == 4  # a's second position.
            assert caught.value.during == "read"
            assert "delete it and reopen the journal" in str(caught.value)
            assert "restore the file" not in str(caught.value)

    anyio.run(read_a)
    (tmp_path / FIRST_INDEX).unlink()

    async def read_again() -> list[int]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            return [event.position async for event in journal.read("a")]

    assert anyio.run(read_again) == [1, 3, 5]
    assert verify_journal(tmp_path).problem is None


def test_an_index_file_that_renames_a_stream_is_rebuilt(tmp_path: Path) -> None:
    """Every position of b given to z, an id of the same length with no event: each count and
    version agrees with the records, only the stream id does not. Trusted, b would open at
    version 0 (its next append a second version 1) and z at version 3."""
    _write(tmp_path, b_in_last_segment=False)
    expected = _versions_from_a_full_scan(tmp_path)
    truth = _true_map(tmp_path)
    original = _forge_stream_map(
        tmp_path, {(b"z" if s == b"b" else s): p for s, p in truth.items()}
    )
    versions, rebuilt = _versions(tmp_path)
    assert versions == expected
    assert (versions["b"], versions["z"]) == (3, 0)
    assert rebuilt == (str(tmp_path / FIRST_SEGMENT),)
    assert _same_index(tmp_path / FIRST_INDEX, original)


@pytest.mark.parametrize(
    ("field", "offset"), [("first position", 16), ("previous hash", 24), ("keyed flag", 10)]
)
def test_a_sealed_segments_header_is_checked_though_its_index_file_is_used(
    tmp_path: Path, field: str, offset: int
) -> None:
    """A header rewritten with a valid checksum, its batches intact: the hash chain of the
    batches does not cover the header, so opening compares the header with what the segments
    before it say, with an index file as without one."""
    _write(tmp_path, b_in_last_segment=False)
    second = sorted(tmp_path.glob("*.log"))[1]
    contents = second.read_bytes()
    header = decode_segment_header(contents)
    first, previous, keyed = header.first_position, header.previous_hash, header.keyed
    if field == "first position":
        first += 1
    elif field == "previous hash":
        previous = bytes(32)
    else:
        keyed = True
    forged = encode_segment_header(first, previous, keyed=keyed)
    second.write_bytes(forged + contents[len(forged) :])
    for index_file in (True, False):
        if not index_file:
            second.with_suffix(".idx").unlink()
        with pytest.raises(JournalCorrupted) as caught:
            _versions(tmp_path)
        assert (caught.value.path, caught.value.offset) == (str(second), offset)


def test_a_segment_cut_short_after_opening_is_blamed_not_its_index_file(tmp_path: Path) -> None:
    """Cut at a record's end (say, an older copy of the segment put in its place), the segment
    holds fewer events than its index file lists, and no damaged frame: the read named the
    intact index file, and said to delete it."""
    _write(tmp_path, b_in_last_segment=False)
    segment = tmp_path / FIRST_SEGMENT
    cut = decode_index_file((tmp_path / FIRST_INDEX).read_bytes()).offsets[3]  # Position 4.

    async def read_a() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            assert journal.recovery_report.rebuilt_indexes == ()
            os.truncate(segment, cut)
            with pytest.raises(JournalCorrupted, match="it was cut short") as caught:
                [event async for event in journal.read("a")]
            assert (caught.value.path, caught.value.offset) == (str(segment), cut)
            assert caught.value.during == "read"
            assert "delete it" not in str(caught.value)

    anyio.run(read_a)


@pytest.mark.parametrize("record", ["position 3", "the last event", "a commit record"])
def test_a_segment_changed_after_opening_is_blamed_not_its_index_file(
    tmp_path: Path, record: str
) -> None:
    """Opening followed the index file's offsets from record to record: an event record found
    elsewhere later (here one made another kind of record, its frame valid, or a commit record
    made an event record) means the segment changed since. The read named the index file, and
    said to delete it. The message says what is at each offset (it once said the next event
    record, of position 4, held position 3)."""
    _write(tmp_path, b_in_last_segment=False)
    segment = tmp_path / FIRST_SEGMENT
    loaded = decode_index_file((tmp_path / FIRST_INDEX).read_bytes())
    offsets = loaded.offsets
    number = 2 if record == "position 3" else len(offsets) - 1
    changed = offsets[number]
    if record == "position 3":
        expected = (
            f"holds no event record at offset {changed}, where the event at position 3 was "
            f"(the next event record is at offset {offsets[3]})"
        )
    elif record == "the last event":
        expected = f"no event record at offset {changed}, where the event at position {number + 1}"
    else:
        changed = loaded.commits[0]  # After position 1.
        expected = (
            f"holds an event record at offset {changed}, before offset {offsets[1]} where the "
            f"event at position 2 was"
        )

    async def change_and_read() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            assert journal.recovery_report.rebuilt_indexes == ()
            data = bytearray(segment.read_bytes())
            length = int.from_bytes(data[changed : changed + 4], "little")
            body = bytearray(data[changed + 8 : changed + 8 + length])
            body[0] = 1 if record == "a commit record" else 2  # The other kind.
            data[changed : changed + 8 + length] = frame(bytes(body))
            segment.write_bytes(bytes(data))
            with pytest.raises(JournalCorrupted, match="the segment changed since") as caught:
                [event async for event in journal.read_all()]
            assert (caught.value.path, caught.value.offset) == (str(segment), changed)
            assert expected in str(caught.value)
            assert "delete it" not in str(caught.value)

    anyio.run(change_and_read)


@pytest.mark.parametrize("read", ["stream", "all"])
def test_a_record_that_is_not_json_is_blamed_though_its_segment_has_an_index_file(
    tmp_path: Path, read: str
) -> None:
    """The record of position 1 given data that is not JSON behind a valid frame: the index file
    and the segment agree (the record is where the file says, of the stream and version it
    says), so the read names the record, not the index file."""
    _write(tmp_path, b_in_last_segment=False)
    segment = tmp_path / FIRST_SEGMENT
    offsets = decode_index_file((tmp_path / FIRST_INDEX).read_bytes()).offsets

    async def damage_and_read() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            assert journal.recovery_report.rebuilt_indexes == ()
            data = bytearray(segment.read_bytes())
            length = int.from_bytes(data[offsets[0] : offsets[0] + 4], "little")
            body = bytearray(data[offsets[0] + 8 : offsets[0] + 8 + length])
            body[-1:] = b"!"  # The data's closing brace.
            data[offsets[0] : offsets[0] + 8 + length] = frame(bytes(body))
            segment.write_bytes(bytes(data))
            events = journal.read("a") if read == "stream" else journal.read_all()
            with pytest.raises(JournalCorrupted, match="not valid JSON") as caught:
                [event async for event in events]
            assert (caught.value.path, caught.value.offset) == (str(segment), offsets[0])

    anyio.run(damage_and_read)


def test_a_short_event_record_is_blamed_where_it_is(tmp_path: Path) -> None:
    """The record of position 1 made an event record too short for an event's fixed header,
    its frame valid: the walk that finds the file to blame names it, and why."""
    _write(tmp_path, b_in_last_segment=False)
    segment = tmp_path / FIRST_SEGMENT
    offsets = decode_index_file((tmp_path / FIRST_INDEX).read_bytes()).offsets

    async def damage_and_read() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            data = bytearray(segment.read_bytes())
            length = int.from_bytes(data[offsets[0] : offsets[0] + 4], "little")
            short = frame(b"\x01" + bytes(20))
            padding = frame(b"\x01" + bytes(length - len(short) - 1))  # The rest of its bytes.
            data[offsets[0] : offsets[0] + 8 + length] = short + padding
            segment.write_bytes(bytes(data))
            with pytest.raises(JournalCorrupted, match="shorter than its fixed header") as caught:
                [event async for event in journal.read("a")]
            assert (caught.value.path, caught.value.offset) == (str(segment), offsets[0])

    anyio.run(damage_and_read)


def test_a_segment_larger_than_one_pread_returns_is_not_blamed_for_its_index_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pread returns at most 2 GiB less 4 KiB on Linux, and a segment may be larger: the
    walk that finds the file to blame read it with one, took its intact end for a torn record
    and blamed the segment. Here a pread returns at most 1 KiB of a whole segment's read."""
    _write(tmp_path, b_in_last_segment=False)
    truth = _true_map(tmp_path)
    _forge_stream_map(tmp_path, {**truth, b"a": [1, 4, 5], b"b": [2, 3, 6]})
    pread = os.pread

    def capped(fd: int, length: int, offset: int) -> bytes:
        return pread(fd, min(length, 1024) if length > 2048 else length, offset)

    monkeypatch.setattr(os, "pread", capped)

    async def read_a() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            with pytest.raises(JournalCorrupted, match="the index file is wrong") as caught:
                [event async for event in journal.read("a")]
            assert caught.value.path == str(tmp_path / FIRST_INDEX)

    anyio.run(read_a)


def test_an_index_file_with_a_wrong_offset_is_rebuilt(tmp_path: Path) -> None:
    """An offset that is not where its event starts, behind a valid checksum, at a position
    the stream map's check does not look at (position 1 is not the last of its stream): the
    offsets are followed from record to record, so opening rebuilds the file rather than
    leave reads to find the wrong offset (tests/test_index_offsets.py: or to serve a frame
    found there)."""
    _write(tmp_path, b_in_last_segment=False)
    path = tmp_path / FIRST_INDEX
    original = path.read_bytes()
    loaded = decode_index_file(original)
    offsets = array("I", loaded.offsets)
    offsets[0] += 1
    segment = SegmentIndex(
        str(tmp_path / FIRST_SEGMENT),
        1,
        offsets,
        loaded.segment_bytes,
        loaded.final_hash,
        loaded.commits,
    )
    path.write_bytes(encode_index_file(segment, loaded.segment_bytes, loaded.streams))
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert report.notes == (f"{path} does not match its segment (opening rebuilds it)",)

    async def read_a() -> list[int]:
        async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
            assert journal.recovery_report.rebuilt_indexes == (str(tmp_path / FIRST_SEGMENT),)
            return [event.version async for event in journal.read("a")]

    assert anyio.run(read_a) == [1, 2, 3]
    assert _same_index(path, original)


def test_an_index_derived_refusal_is_checked_against_the_segments_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the checks of an index file miss a lie, opening still blames no intact segment:
    before refusing it opens again from the segments alone."""
    _write(tmp_path, b_in_last_segment=True)
    truth = _true_map(tmp_path)
    _forge_stream_map(tmp_path, {**truth, b"a": [1, 3, 5, 6], b"b": [2, 4]})
    monkeypatch.setattr(
        index_trust,
        "index_stream_versions",
        lambda data, loaded, versions: _blind(loaded, versions),
    )
    versions, rebuilt = _versions(tmp_path)
    assert (versions["a"], versions["b"]) == (3, 4)
    assert str(tmp_path / FIRST_SEGMENT) in rebuilt


def _blind(loaded: object, versions: dict[bytes, int]) -> dict[bytes, int]:
    """The stream versions an index file claims, believed without a look at the segment."""
    streams: dict[bytes, array[int]] = loaded.streams  # type: ignore[attr-defined]
    return {stream: versions.get(stream, 0) + len(p) for stream, p in streams.items()}


def test_a_refused_open_after_a_lying_index_file_changes_no_file(tmp_path: Path) -> None:
    _write(tmp_path, b_in_last_segment=True)
    truth = _true_map(tmp_path)
    _forge_stream_map(tmp_path, {**truth, b"a": [1, 3, 5, 6], b"b": [2, 4]})
    last = sorted(tmp_path.glob("*.log"))[-1]
    contents = bytearray(last.read_bytes())
    contents[64 + 20] ^= 0x01  # Damage the last segment's first record, before valid batches.
    last.write_bytes(bytes(contents))
    before = file_digests(tmp_path)
    with pytest.raises(JournalCorrupted) as caught:
        _versions(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(last), 64)
    assert file_digests(tmp_path) == before


@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_stream_map_with_a_valid_checksum_yields_a_wrong_version_or_blames_a_segment(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("forged")
    b_in_last_segment = data.draw(st.booleans())
    _write(directory, b_in_last_segment=b_in_last_segment)
    truth = _true_map(directory)
    positions = sorted(p for stream in truth.values() for p in stream)
    true_owners = [next(s for s, p in truth.items() if position in p) for position in positions]
    below = min(p[-1] for p in truth.values())  # Positions below every stream's last one.
    # Any partition of the segment's positions among some stream ids (what decoding accepts);
    # or the true owners shuffled, which keeps every stream's count; or shuffled only below
    # every stream's last position, which keeps what opening checks too.
    owners = data.draw(
        st.lists(
            st.sampled_from([b"a", b"b", b"filler", b"z"]),
            min_size=len(positions),
            max_size=len(positions),
        )
        | st.permutations(true_owners)
        | st.permutations(true_owners[: below - 1]).map(
            lambda shuffled: [*shuffled, *true_owners[below - 1 :]]
        )
    )
    lying: dict[bytes, list[int]] = {}
    for position, owner in zip(positions, owners, strict=True):
        lying.setdefault(owner, []).append(position)
    expected = _versions_from_a_full_scan(directory)
    _forge_stream_map(directory, lying)
    report = verify_journal(directory)
    versions, rebuilt = _versions(directory)
    assert versions == expected
    index_file = str(directory / FIRST_INDEX)
    if lying == truth:
        event("the true stream map")
        assert (report.problem, rebuilt) == (None, ())
    elif rebuilt:
        event("opening rebuilt the index file")
        assert report.problem is None
        assert report.notes == (f"{index_file} does not match its segment (opening rebuilds it)",)
    else:  # Opening used it: the counts agree, only reads of the moved positions fail.
        event("opening used the index file")
        assert report.problem is not None
        assert report.problem.path == index_file

        async def read_every_stream() -> set[str]:
            blamed: set[str] = set()
            async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
                for stream in ("a", "b", "filler"):
                    try:
                        [event async for event in journal.read(stream)]
                    except JournalCorrupted as error:
                        blamed.add(error.path)
            return blamed

        assert anyio.run(read_every_stream) <= {index_file}


@pytest.mark.parametrize("field", ["final hash", "segment size"])
def test_an_index_file_with_another_end_of_its_segment_is_noted_and_rebuilt(
    tmp_path: Path, field: str
) -> None:
    # Its offsets and streams agree with the segment; where the segment ends, or the hash
    # there, does not: opening does not use it, and verify says so.
    _write(tmp_path, b_in_last_segment=False)
    path = tmp_path / FIRST_INDEX
    original = path.read_bytes()
    loaded = decode_index_file(original)
    final_hash, size = loaded.final_hash, loaded.segment_bytes
    if field == "final hash":
        final_hash = bytes(32)
    else:
        size -= 1
    segment = SegmentIndex(
        str(tmp_path / FIRST_SEGMENT), loaded.first_position, loaded.offsets, size, final_hash
    )
    segment.commits = loaded.commits
    path.write_bytes(encode_index_file(segment, size, loaded.streams))
    report = verify_journal(tmp_path)
    assert report.problem is None
    assert report.notes == (f"{path} does not match its segment (opening rebuilds it)",)
    versions, rebuilt = _versions(tmp_path)
    assert rebuilt == (str(tmp_path / FIRST_SEGMENT),)
    assert (versions["a"], versions["b"]) == (3, 3)
    assert _same_index(path, original)


class _Shouting(str):
    """A str subclass with an ``encode`` of its own."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return super().encode(encoding, errors).upper()


@pytest.mark.anyio
async def test_an_index_file_names_a_str_subclass_stream_by_its_text(tmp_path: Path) -> None:
    # Its records carry the id's text; an index file that named the stream by what the
    # subclass's own encode made of it disagreed with its segment, and was rebuilt at open.
    async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        for _ in range(100):
            events = [NewEvent("E", "x" * 50)]
            await journal.append(_Shouting("orders"), events, expected_version=None)
    async with FileJournal(tmp_path) as journal:
        assert journal.recovery_report.segments > 1
        assert journal.recovery_report.rebuilt_indexes == ()
        assert await journal.stream_version("orders") == 100
