"""Snapshots of a keyed journal carry a MAC made with the journal's key, so that whoever can
write ``snapshots.dat`` cannot hand an entity a state its events never folded to.

A forger is modelled as one who can write every file: forged records have a valid frame
checksum, and the clean-close record (which records the snapshot file's size) is removed, as
the forger would remove it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journals import FileJournal, JournalCorrupted, NewEvent, Snapshot, verify_journal
from journals._codec import (
    FRAME_BYTES,
    KIND_KEYED_SNAPSHOT,
    KIND_SNAPSHOT,
    SNAPSHOT_FILE_HEADER_BYTES,
    SNAPSHOT_HEADER,
    SNAPSHOT_MAC_INVALID,
    SNAPSHOT_MAC_NONE,
    SNAPSHOT_MAC_UNCHECKED,
    SNAPSHOT_MAC_VALID,
    RecordError,
    decode_snapshot,
    encode_snapshot,
    encode_snapshot_file_header,
    frame,
    read_frame,
    snapshot_mac,
    snapshot_unusable,
)
from journals._file_snapshots import SNAPSHOT_FILE_NAME
from runtime import Runtime
from runtime._cli import main as cli

from .journal_files import without_clean_close
from .test_runtime_bank import Account, Deposit, Open, make_account

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
STREAM = "account-42"
METADATA = {"aggregate": "account", "schema": 1}
FORGED_STATE = {"owner": "forged", "balance": 1_000_000, "deposits": 0}
snapshotting = make_account(snapshot_every=100)


def _record(
    stream_id: str,
    version: int,
    data: object,
    *,
    kind: int,
    mac_key: bytes | None = None,
    metadata: object = METADATA,
) -> bytes:
    """A snapshot record as a forger writes it: any kind, a valid frame checksum, a MAC made
    with ``mac_key`` (for kind 4)."""
    stream = stream_id.encode()
    encoded_metadata = orjson.dumps(metadata)
    head = SNAPSHOT_HEADER.pack(kind, version, 7, len(stream), len(encoded_metadata))
    body = head + stream + encoded_metadata + orjson.dumps(data)
    if kind == KIND_KEYED_SNAPSHOT:
        assert mac_key is not None
        body += snapshot_mac(body, mac_key)
    return frame(body)


def _records(path: Path) -> list[bytes]:
    """The framed records of a snapshot file."""
    raw = path.read_bytes()
    records = []
    offset = SNAPSHOT_FILE_HEADER_BYTES
    while offset < len(raw):
        _, end = read_frame(raw, offset)
        records.append(raw[offset:end])
        offset = end
    return records


async def _history(directory: Path, key: bytes | None) -> None:
    """Account 42 opened by ada, then two deposits: 5 and 6 (version 3, balance 11)."""
    async with FileJournal(directory, key=key) as journal, Runtime(journal) as rt:
        await rt.ask(snapshotting, "42", Open("ada"))
        await rt.ask(snapshotting, "42", Deposit(5))
        await rt.ask(snapshotting, "42", Deposit(6))


async def _state(directory: Path, key: bytes | None) -> Account:
    async with FileJournal(directory, key=key) as journal, Runtime(journal) as rt:
        state: Account = await rt.state(snapshotting, "42")
        return state


def _append_to_snapshots(directory: Path, *records: bytes) -> None:
    without_clean_close(directory)
    with open(directory / SNAPSHOT_FILE_NAME, "ab") as file:
        for record in records:
            file.write(record)


async def _save(directory: Path, key: bytes | None, version: int, data: object) -> None:
    async with FileJournal(directory, key=key) as journal:
        await journal.save_snapshot(STREAM, version, data, METADATA)


async def _load(
    directory: Path, key: bytes | None, stream_id: str = STREAM, max_version: int | None = None
) -> Snapshot | None:
    async with FileJournal(directory, key=key) as journal:
        return await journal.load_snapshot(stream_id, max_version)


FORGERIES = {
    "without a MAC": _record(STREAM, 3, FORGED_STATE, kind=KIND_SNAPSHOT),
    "with another key": _record(STREAM, 3, FORGED_STATE, kind=KIND_KEYED_SNAPSHOT, mac_key=b"o"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
@pytest.mark.anyio
async def test_an_entity_of_a_keyed_journal_is_never_activated_from_a_forged_snapshot(
    tmp_path: Path, forgery: str
) -> None:
    await _history(tmp_path, KEY)
    _append_to_snapshots(tmp_path, FORGERIES[forgery])
    assert await _state(tmp_path, KEY) == Account("ada", 11, 2)  # The events' fold.
    assert await _load(tmp_path, KEY) is None


@pytest.mark.anyio
async def test_an_entity_of_a_keyed_journal_is_activated_from_a_genuine_snapshot(
    tmp_path: Path,
) -> None:
    await _history(tmp_path, KEY)
    # A snapshot that disagrees with the events shows that activation used it.
    await _save(tmp_path, KEY, 2, {"owner": "from-snapshot", "balance": 1000, "deposits": 0})
    assert await _state(tmp_path, KEY) == Account("from-snapshot", 1006, 1)
    (record,) = _records(tmp_path / SNAPSHOT_FILE_NAME)
    assert record[FRAME_BYTES] == KIND_KEYED_SNAPSHOT


def test_verify_reports_a_snapshot_whose_mac_does_not_hold_as_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    anyio.run(_history, tmp_path, KEY)
    anyio.run(_save, tmp_path, KEY, 2, {"owner": "ada", "balance": 5, "deposits": 1})
    offset = (tmp_path / SNAPSHOT_FILE_NAME).stat().st_size
    _append_to_snapshots(tmp_path, FORGERIES["with another key"], FORGERIES["with another key"])
    report = verify_journal(tmp_path, key=KEY)
    assert report.problem is not None
    assert report.problem.path == str(tmp_path / SNAPSHOT_FILE_NAME)
    assert report.problem.offset == offset
    assert "snapshot MAC mismatch" in report.problem.reason
    assert "2 snapshot records" in report.problem.reason
    key_file = tmp_path.parent / "key"
    key_file.write_bytes(KEY)
    assert cli(["verify", str(tmp_path), "--key-file", str(key_file)]) == 1
    assert "damaged:" in capsys.readouterr().err
    # Opening does not refuse the journal for it; the genuine snapshot is still the one used.
    loaded = anyio.run(_load, tmp_path, KEY)
    assert loaded is not None
    assert loaded.version == 2


def test_a_snapshot_without_a_mac_in_a_keyed_journal_is_a_note_and_compaction_removes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a keyed journal's earlier versions wrote: not damage, but not used either."""
    anyio.run(_history, tmp_path, KEY)
    old = _record(STREAM, 3, {"owner": "ada", "balance": 11, "deposits": 2}, kind=KIND_SNAPSHOT)
    _append_to_snapshots(tmp_path, old)
    report = verify_journal(tmp_path, key=KEY)
    assert report.intact
    assert any("without a MAC" in note for note in report.notes)
    with caplog.at_level(logging.WARNING, "journals.file"):
        assert anyio.run(_load, tmp_path, KEY) is None
    assert "holds 1 snapshot record that opening does not use" in caplog.text

    async def compact() -> None:
        async with FileJournal(tmp_path, key=KEY) as journal:
            compaction = await journal.compact_snapshots()
            assert (compaction.snapshots_before, compaction.snapshots_after) == (1, 0)

    anyio.run(compact)
    assert _records(tmp_path / SNAPSHOT_FILE_NAME) == []
    assert verify_journal(tmp_path, key=KEY).notes == ()


@pytest.mark.parametrize("moved_to", [("account-43", 2), (STREAM, 1)])
def test_a_genuine_snapshot_moved_to_another_stream_or_version_fails_its_mac(
    tmp_path: Path, moved_to: tuple[str, int]
) -> None:
    async def two_streams() -> None:
        async with FileJournal(tmp_path, key=KEY) as journal:
            for stream_id in (STREAM, "account-43"):
                await journal.append(stream_id, [_event(), _event()], expected_version=0)
            await journal.save_snapshot(STREAM, 2, FORGED_STATE, METADATA)

    anyio.run(two_streams)
    path = tmp_path / SNAPSHOT_FILE_NAME
    (genuine,) = _records(path)
    _, end = read_frame(genuine, 0)
    body = bytearray(genuine[FRAME_BYTES:end])
    stream_id, version = moved_to
    # Same lengths: only the stream id's last character, or the version, changes.
    body[SNAPSHOT_HEADER.size : SNAPSHOT_HEADER.size + len(stream_id)] = stream_id.encode()
    body[1:9] = version.to_bytes(8, "little")
    without_clean_close(tmp_path)
    path.write_bytes(encode_snapshot_file_header() + frame(bytes(body)))
    assert anyio.run(_load, tmp_path, KEY, stream_id) is None
    problem = verify_journal(tmp_path, key=KEY).problem
    assert problem is not None
    assert "snapshot MAC mismatch" in problem.reason


def _event() -> NewEvent:
    return NewEvent("Deposited", {"amount": 1})


def test_compaction_and_reopening_keep_genuine_snapshots_valid(tmp_path: Path) -> None:
    async def many() -> None:
        async with FileJournal(tmp_path, key=KEY) as journal:
            await journal.append(STREAM, [_event()] * 40, expected_version=0)
            for version in range(1, 41):
                await journal.save_snapshot(STREAM, version, {"v": version}, METADATA)
            compaction = await journal.compact_snapshots()
            assert compaction.snapshots_after < compaction.snapshots_before
            loaded = await journal.load_snapshot(STREAM)
            assert loaded is not None
            assert loaded.data == {"v": 40}

    anyio.run(many)
    assert verify_journal(tmp_path, key=KEY).intact
    assert verify_journal(tmp_path, key=KEY).notes == ()
    for max_version in (40, 20, 1):
        loaded = anyio.run(_load, tmp_path, KEY, STREAM, max_version)
        assert loaded is not None
        assert loaded.data == {"v": loaded.version}
        assert loaded.version <= max_version


@pytest.mark.anyio
async def test_a_snapshot_rewritten_while_the_journal_is_open_is_refused_by_its_load(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path, key=KEY) as journal:
        await journal.append(STREAM, [_event()] * 3, expected_version=0)
        await journal.save_snapshot(STREAM, 3, {"owner": "x"}, METADATA)
        path = tmp_path / SNAPSHOT_FILE_NAME
        (genuine,) = _records(path)
        forged = _record(STREAM, 3, {"owner": "y"}, kind=KIND_KEYED_SNAPSHOT, mac_key=OTHER_KEY)
        assert len(forged) == len(genuine)
        raw = path.read_bytes()
        forged_file = raw[:SNAPSHOT_FILE_HEADER_BYTES] + forged
        path.write_bytes(forged_file)  # Same size: the open file descriptor reads it.
        with pytest.raises(JournalCorrupted, match="snapshot MAC mismatch"):
            await journal.load_snapshot(STREAM)
        with pytest.raises(JournalCorrupted, match="snapshot MAC mismatch"):
            await journal.load_snapshot_matching(STREAM, {"schema": 1})


def test_an_unkeyed_journal_writes_snapshot_records_as_before(tmp_path: Path) -> None:
    """Byte for byte: kind 3, no MAC, the layout of journal-format.md."""
    assert encode_snapshot(2, 7, b"s", b"{}", b"[1]").hex() == (
        "1c000000739dc1ef" + "030200000000000000" + "0700000000000000" + "0102000000"
        "73" + "7b7d" + "5b315d"
    )

    async def save() -> None:
        async with FileJournal(tmp_path) as journal:
            await journal.append(STREAM, [_event()] * 2, expected_version=0)
            await journal.save_snapshot(STREAM, 2, [1], {"m": 1})

    anyio.run(save)
    (record,) = _records(tmp_path / SNAPSHOT_FILE_NAME)
    fields = decode_snapshot(record[FRAME_BYTES:])
    assert fields.mac == SNAPSHOT_MAC_NONE
    assert record == encode_snapshot(
        2, fields.timestamp_ns, STREAM.encode(), fields.metadata, fields.data
    )
    # A keyed record in an unkeyed journal is not used (it cannot be checked), not refused.
    _append_to_snapshots(
        tmp_path, _record(STREAM, 2, FORGED_STATE, kind=KIND_KEYED_SNAPSHOT, mac_key=KEY)
    )
    loaded = anyio.run(_load, tmp_path, None)
    assert loaded is not None
    assert loaded.data == [1]


@pytest.mark.anyio
async def test_a_bad_record_before_a_keyed_one_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    async with FileJournal(tmp_path, key=KEY) as journal:
        await journal.append(STREAM, [_event()] * 2, expected_version=0)
        await journal.save_snapshot(STREAM, 1, {"n": 1}, METADATA)
        await journal.save_snapshot(STREAM, 2, {"n": 2}, METADATA)
    without_clean_close(tmp_path)
    path = tmp_path / SNAPSHOT_FILE_NAME
    raw = bytearray(path.read_bytes())
    raw[SNAPSHOT_FILE_HEADER_BYTES + FRAME_BYTES + 10] ^= 1  # Inside the first record's body.
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalCorrupted, match="record checksum mismatch"):
        await _load(tmp_path, KEY)


_streams = st.text(min_size=1, max_size=20).filter(lambda text: len(text.encode()) < 256)


@given(
    version=st.integers(1, 2**63),
    timestamp_ns=st.integers(-(2**63), 2**63 - 1),
    stream_id=_streams,
    metadata=st.binary(max_size=40),
    data=st.binary(max_size=80),
    key=st.none() | st.binary(min_size=1, max_size=64),
    changed=st.integers(0),
    by=st.integers(1, 255),
)
def test_the_snapshot_codec_round_trips_and_any_changed_byte_is_detected(
    version: int,
    timestamp_ns: int,
    stream_id: str,
    metadata: bytes,
    data: bytes,
    key: bytes | None,
    changed: int,
    by: int,
) -> None:
    record = encode_snapshot(version, timestamp_ns, stream_id.encode(), metadata, data, key)
    start, end = read_frame(record, 0)
    fields = decode_snapshot(record[start:end], key)
    assert (fields.version, fields.timestamp_ns, fields.stream_id) == (
        version,
        timestamp_ns,
        stream_id,
    )
    assert (fields.metadata, fields.data) == (metadata, data)
    assert fields.mac == (SNAPSHOT_MAC_NONE if key is None else SNAPSHOT_MAC_VALID)
    assert snapshot_unusable(fields, key) is None
    if key is not None:
        assert decode_snapshot(record[start:end]).mac == SNAPSHOT_MAC_UNCHECKED
        assert snapshot_unusable(decode_snapshot(record[start:end], b"x"), b"x") is not None
    # Any byte changed: the frame's checksum sees it.
    damaged = bytearray(record)
    damaged[changed % len(record)] ^= by
    with pytest.raises(RecordError):
        read_frame(bytes(damaged), 0)
    # Any byte of the body changed by someone who recomputes the checksum (a forger): a keyed
    # journal uses it no more (its MAC, or its kind, gives it away).
    if key is not None:
        body = bytearray(record[start:end])
        body[changed % len(body)] ^= by
        try:
            forged = decode_snapshot(bytes(body), key)
        except RecordError:
            return
        assert snapshot_unusable(forged, key) is not None
        assert forged.mac in (SNAPSHOT_MAC_INVALID, SNAPSHOT_MAC_NONE)


def _framed(kind: int, stream_length: int, rest: bytes) -> bytes:
    """A record with a valid frame checksum whose header claims ``stream_length``."""
    return frame(SNAPSHOT_HEADER.pack(kind, 3, 7, stream_length, 0) + rest)


# Whole frames that no crash leaves (a torn write fails its checksum), at the file's end.
NO_TORN_WRITE = {
    "a keyed record whose fields overrun its MAC": _framed(KIND_KEYED_SNAPSHOT, 200, b"s" * 40),
    "a keyed record shorter than a MAC": _framed(KIND_KEYED_SNAPSHOT, 1, b"s"),
    "a record of no known kind": _framed(9, 1, b"s"),
    "a record without a MAC whose fields overrun it": _framed(KIND_SNAPSHOT, 200, b"s"),
}


@pytest.mark.parametrize("record", NO_TORN_WRITE)
def test_a_whole_record_at_the_end_is_never_cut_as_a_torn_tail(tmp_path: Path, record: str) -> None:
    """A frame whose checksum holds was written whole: whatever is wrong with it was written
    so, by someone without the key or by damage, and is reported as the same record anywhere
    else in the file is. A keyed journal does not use a keyed record its key did not make,
    whatever its fields say, and verify reports it; anything else is refused."""
    anyio.run(_history, tmp_path, KEY)
    anyio.run(_save, tmp_path, KEY, 2, {"owner": "ada", "balance": 5, "deposits": 1})
    offset = (tmp_path / SNAPSHOT_FILE_NAME).stat().st_size
    _append_to_snapshots(tmp_path, NO_TORN_WRITE[record])
    if record.startswith("a keyed"):
        report = verify_journal(tmp_path, key=KEY)
        assert report.torn_tails == ()
        assert report.problem is not None
        assert report.problem.offset == offset
        assert "snapshot MAC mismatch" in report.problem.reason
        loaded = anyio.run(_load, tmp_path, KEY)
        assert loaded is not None
        assert loaded.version == 2
        assert (tmp_path / SNAPSHOT_FILE_NAME).stat().st_size > offset  # Nothing was cut.
    else:
        report = verify_journal(tmp_path, key=KEY)
        assert report.torn_tails == ()
        assert report.problem is not None
        assert report.problem.offset == offset
        with pytest.raises(JournalCorrupted, match=f"byte offset {offset}"):
            anyio.run(_load, tmp_path, KEY)


def test_the_warning_of_unused_snapshots_says_whether_the_open_removed_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgraded journal's records without a MAC: once worth a compaction, the open that
    compacts drops them, and its warning must not say the file still holds them."""
    anyio.run(_history, tmp_path, KEY)
    old = _record(STREAM, 3, "x" * 60_000, kind=KIND_SNAPSHOT)
    _append_to_snapshots(tmp_path, old)
    with caplog.at_level(logging.WARNING, "journals.file"):
        assert anyio.run(_load, tmp_path, KEY) is None
    assert "holds 1 snapshot record that opening does not use" in caplog.text
    assert "a compaction of the file removes them" in caplog.text
    caplog.clear()
    _append_to_snapshots(tmp_path, *[old] * 19)  # 20 of them: over 1 MiB, all dropped.
    with caplog.at_level(logging.WARNING, "journals.file"):
        assert anyio.run(_load, tmp_path, KEY) is None
    assert "held 20 snapshot records that opening does not use" in caplog.text
    assert "the compaction at open removed them" in caplog.text
    assert _records(tmp_path / SNAPSHOT_FILE_NAME) == []
