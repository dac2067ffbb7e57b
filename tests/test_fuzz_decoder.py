"""Hostile bytes at the edges: a bounded fuzz run of the decoders, and targeted hostile files.

The long run is ``python -m benchmarks.fuzz_decoder --seconds N``; here each kind of file gets a
few hundred mutated inputs (bit flips, extreme length fields, cuts, splices, re-framed records
with correct checksums), which must be rejected with the journal's own errors, promptly and
without memory out of proportion to the input.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_decoder import MEMORY_RATIO_MAX, FuzzReport, fuzz_one
from journals import EventEncodingError, FileJournal, JournalCorrupted, NewEvent

from .examples import examples
from .journal_files import without_clean_close


@pytest.fixture(autouse=True)
def _quiet_recovery(caplog: pytest.LogCaptureFixture) -> None:
    # Recovery logs every torn tail it cuts at WARNING; hundreds are expected here.
    caplog.set_level(logging.ERROR, logger="journals")


def _fuzz(role: str, seed: int, tmp_path: Path) -> FuzzReport:
    report = FuzzReport()
    fuzz_one(seed, tmp_path, report, open_directory=seed % 4 == 0, role=role)
    return report


_fuzz_settings = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("role", ["sealed", "last"])
@_fuzz_settings
@given(seed=st.integers(0, 2**32 - 1))
def test_hostile_segments_are_rejected_with_journal_errors(
    tmp_path: Path, role: str, seed: int
) -> None:
    report = _fuzz(role, seed, tmp_path)
    assert report.failures == []
    assert report.peak_ratio <= MEMORY_RATIO_MAX


@_fuzz_settings
@given(seed=st.integers(0, 2**32 - 1))
def test_hostile_index_files_are_rejected_with_journal_errors(tmp_path: Path, seed: int) -> None:
    assert _fuzz("index", seed, tmp_path).failures == []


@_fuzz_settings
@given(seed=st.integers(0, 2**32 - 1))
def test_hostile_snapshot_files_are_rejected_with_journal_errors(tmp_path: Path, seed: int) -> None:
    assert _fuzz("snapshots", seed, tmp_path).failures == []


def test_the_fuzz_target_reports_a_foreign_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target must be able to fail: a decoder that lets a foreign exception out is reported."""
    import benchmarks.fuzz_decoder as target

    def leaky(data: bytes) -> None:
        raise struct.error("leaked")

    monkeypatch.setattr(target, "decode_index_file", leaky)
    assert any("error: leaked" in message for _, message in _fuzz("index", 1, tmp_path).failures)


def test_the_fuzz_target_reports_an_allocation_out_of_proportion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory bound is a check of the run, with the seed, not only a figure it prints."""
    import benchmarks.fuzz_decoder as target

    def greedy(data: bytes) -> None:
        bytearray(int(MEMORY_RATIO_MAX + 1) * (len(data) + 4096))

    monkeypatch.setattr(target, "decode_everything", greedy)
    failures = _fuzz("sealed", 7, tmp_path).failures
    assert len(failures) == 1
    assert failures[0][0] == 7
    assert re.search(r"sealed: peak memory 9\.\dx the input size, above 8x", failures[0][1])


def test_a_run_of_no_time_tries_its_first_seed(capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed S --seconds 0`` is how a reported failure is run again."""
    from benchmarks.fuzz_decoder import main

    assert main(["--seconds", "0", "--seed", "3"]) == 0
    assert "first seed 3, 1 inputs in" in capsys.readouterr().out


_CORPUS_DIGEST = """
import hashlib
from benchmarks.fuzz_decoder import corpus
print(hashlib.sha256(repr(sorted(
    (name, data) for name, data in corpus().items() if name != "file:lock"
)).encode()).hexdigest())
"""


def test_the_fuzz_corpus_is_the_same_in_every_run() -> None:
    """A failing seed reproduces only if the files it mutates are the same bytes every time."""
    digests = {
        subprocess.run(
            [sys.executable, "-c", _CORPUS_DIGEST],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for hash_seed in (1, 2)
    }
    assert len(digests) == 1


# -- targeted hostile files ----------------------------------------------------------------------


def _journal(directory: Path) -> list[Path]:
    async def write() -> None:
        async with FileJournal(directory, segment_bytes_max=4096) as journal:
            for number in range(30):
                await journal.append(
                    f"s-{number % 3}",
                    [NewEvent("E", {"n": number, "pad": "q" * 80})],
                    expected_version=None,
                )

    anyio.run(write)
    return sorted(directory.glob("*.log"))


async def _read_all(directory: Path) -> int:
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        return len([event async for event in journal.read_all()])


def _frame(body: bytes) -> bytes:
    length = struct.pack("<I", len(body))
    return length + struct.pack("<I", zlib.crc32(body, zlib.crc32(length))) + body


@pytest.mark.parametrize("length", [2**26 + 1, 2**31, 2**32 - 1])
def test_a_huge_length_field_at_the_end_is_a_torn_tail_without_allocating_it(
    tmp_path: Path, length: int
) -> None:
    last = _journal(tmp_path)[-1]
    size = last.stat().st_size
    without_clean_close(tmp_path)  # The bytes stand for a write torn by a crash.
    with last.open("ab") as file:
        file.write(struct.pack("<II", length, 0) + b"x" * 100)
    tracemalloc.start()
    try:
        count = anyio.run(_read_all, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 30
    assert last.stat().st_size == size
    assert peak < 4 * 1024 * 1024


def test_a_huge_length_field_in_a_sealed_segment_is_corruption(tmp_path: Path) -> None:
    first = _journal(tmp_path)[0]
    data = bytearray(first.read_bytes())
    struct.pack_into("<I", data, 64, 2**32 - 1)
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupted, match="out of bounds") as raised:
        anyio.run(_read_all, tmp_path)
    assert (Path(raised.value.path), raised.value.offset) == (first, 64)


@pytest.mark.parametrize("name", ["00000000000000000001.log", "snapshots.dat"])
def test_random_bytes_instead_of_a_file_are_refused(tmp_path: Path, name: str) -> None:
    _journal(tmp_path)
    (tmp_path / name).write_bytes(random.Random(7).randbytes(5000))
    with pytest.raises(JournalCorrupted) as raised:
        anyio.run(_read_all, tmp_path)
    assert (Path(raised.value.path), raised.value.offset) == (tmp_path / name, 0)


def test_random_bytes_as_a_whole_journal_are_refused(tmp_path: Path) -> None:
    rng = random.Random(11)
    tmp_path.chmod(0o700)
    for name in ["00000000000000000001.log", "00000000000000000050.log", "snapshots.dat"]:
        (tmp_path / name).write_bytes(rng.randbytes(rng.randint(1, 9000)))
    with pytest.raises(JournalCorrupted):
        anyio.run(_read_all, tmp_path)


def test_deeply_nested_data_is_refused_on_append(tmp_path: Path) -> None:
    deep: list[object] = []
    for _ in range(2000):
        deep = [deep]

    async def append() -> None:
        async with FileJournal(tmp_path / "journal") as journal:
            with pytest.raises(EventEncodingError, match="cannot be encoded as JSON"):
                await journal.append("s", [NewEvent("Deep", deep)], expected_version=0)
            assert await journal.head_position() == 0

    anyio.run(append)


def _forge_last_event_data(last: Path, data: bytes) -> tuple[int, int]:
    """Replace the data of the last event, with correct checksums and chain (unkeyed).

    Answers (offset of the forged record, its position).
    """
    raw = last.read_bytes()
    offsets, offset = [], 64
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offsets.append((offset, offset + 8 + length, raw[offset + 8]))
        offset += 8 + length
    event_start, event_end, _ = offsets[-2]
    commit_start, commit_end, _ = offsets[-1]
    previous_commit = offsets[-3]
    previous_hash = (
        raw[previous_commit[0] + 8 + 21 : previous_commit[1]]
        if previous_commit[2] == 2
        else raw[24:56]
    )
    body = bytearray(raw[event_start + 8 : event_end])
    stream_length, type_length, metadata_length = struct.unpack_from("<BBI", body, 25)
    data_start = 31 + stream_length + type_length + metadata_length
    forged_event = _frame(bytes(body[:data_start]) + data)
    chain = hashlib.blake2b(previous_hash + forged_event, digest_size=32).digest()
    commit_body = bytearray(raw[commit_start + 8 : commit_end])
    commit_body[21:53] = chain
    last.write_bytes(raw[:event_start] + forged_event + _frame(bytes(commit_body)))
    position: int = struct.unpack_from("<Q", body, 1)[0]
    return event_start, position


def test_forged_deep_json_is_read_as_a_clear_error(tmp_path: Path) -> None:
    last = _journal(tmp_path)[-1]
    offset, _ = _forge_last_event_data(last, b"[" * 100_000 + b"]" * 100_000)
    # The journal was closed cleanly: opening sees that its end changed since.
    with pytest.raises(JournalCorrupted, match="was closed cleanly"):
        anyio.run(_read_all, tmp_path)
    without_clean_close(tmp_path)  # As a forger who knew of the record would.
    with pytest.raises(JournalCorrupted) as raised:
        anyio.run(_read_all, tmp_path)
    assert (Path(raised.value.path), raised.value.offset) == (last, offset)
