"""Fuzz the journal's record decoders and recovery with hostile bytes, for a bounded time.

    python -m benchmarks.fuzz_decoder --seconds 60

Inputs start from the files of a real journal (a sealed segment, its index, the last segment,
the snapshot file) and are mutated: bit flips, extreme length fields (0, 1, just over the
64 MiB bound, 2**32 - 1), truncations, duplicated and inserted ranges, random bytes, and
re-framing with correct checksums (a forger's edit, which reaches the decoders behind the
CRC). Each input goes through every decoder that reads that kind of file, and one in
``--directory-every`` through opening a whole journal directory and reading it back.

The contract checked: hostile input is rejected with the journal's own errors
(``RecordError`` inside the codec, ``JournalCorrupted`` at the surface, or
``JournalKeyMissing`` for a forged header that claims a keyed chain), never another
exception, never a hang, and never memory out of proportion to the input (a huge length field
must not allocate what it claims: a decode whose peak is above ``MEMORY_RATIO_MAX`` times
its input is a failure). The run prints inputs tried, per-second rate, the slowest input and
its seed, the peak memory ratio, and every failure with a reproducer seed: the corpus journal
is written with a fixed clock, so a seed gives the same input in every run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from unittest import mock

import anyio

from benchmarks._arguments import positive_int
from journals import FileJournal, JournalCorrupted, JournalKeyMissing, NewEvent, verify_journal
from journals._codec import (
    ZERO_HASH,
    RecordError,
    check_snapshot_file_header,
    decode_commit,
    decode_event,
    decode_segment_header,
    decode_snapshot,
    read_frame,
)
from journals._index import decode_index_file
from journals._recovery import scan_segment

EXTREME_U32 = [0, 1, 8, 53, 2**26, 2**26 + 1, 2**31 - 1, 2**32 - 1]
SEGMENT_BYTES_MAX = 4096
MEMORY_RATIO_MAX = 8.0
"""The most a decode may allocate at its peak, as a multiple of its input's size plus 4 KiB."""


class FuzzFailure(AssertionError):
    """A decoder raised something other than the journal's own errors, or used too much."""


# -- the corpus: files of a real journal -------------------------------------------------------


async def _write_journal(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        for number in range(60):
            events = [
                NewEvent("Noted", {"n": number, "i": i, "deep": [[{"k": "v"}]]}, {"m": i})
                for i in range(1 + number % 3)
            ]
            await journal.append(f"stream-{number % 5}", events, expected_version=None)
            if number % 10 == 9:
                await journal.save_snapshot(f"stream-{number % 5}", 1, {"state": number})


async def _open_and_close(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX):
        pass


CORPUS_TIME_NS = 1_800_000_000_000_000_000
"""The clock the corpus journal is written with: the same bytes in every run, so a failing
seed reproduces (with the wall clock, every timestamp, checksum and chain hash differed)."""


@cache
def corpus() -> dict[str, bytes]:
    """The files of a small real journal, by role: sealed, index, last, snapshots."""
    ticks = itertools.count(CORPUS_TIME_NS, 1_000)
    with (
        tempfile.TemporaryDirectory() as work,
        mock.patch.object(time, "time_ns", side_effect=ticks),
    ):
        directory = Path(work) / "journal"
        anyio.run(_write_journal, directory)
        # The committer writes a sealed segment's streams into its index file in set order,
        # which varies with the interpreter's hash seed; the index files that opening
        # rebuilds follow the segment, so every run has the same bytes.
        for index_file in directory.glob("*.idx"):
            index_file.unlink()
        anyio.run(_open_and_close, directory)
        segments = sorted(directory.glob("*.log"))
        return {
            "sealed": segments[0].read_bytes(),
            "index": (directory / (segments[0].stem + ".idx")).read_bytes(),
            "last": segments[-1].read_bytes(),
            "snapshots": (directory / "snapshots.dat").read_bytes(),
            **{f"file:{p.name}": p.read_bytes() for p in directory.iterdir() if p.is_file()},
        }


# -- mutations ---------------------------------------------------------------------------------


def reframe(data: bytearray, start: int) -> None:
    """Fix the checksum of every frame that still has a plausible length (a forger's edit)."""
    offset = start
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        end = offset + 8 + length
        if length == 0 or end > len(data):
            return
        crc = zlib.crc32(data[offset + 8 : end], zlib.crc32(data[offset : offset + 4]))
        struct.pack_into("<I", data, offset + 4, crc)
        offset = end


def mutate(data: bytes, rng: random.Random, *, header_bytes: int) -> bytes:
    """One to four random edits of ``data``; sometimes re-framed, index checksums fixed."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        size = max(len(out), 1)
        where = rng.randrange(size)
        choice = rng.randrange(7)
        if choice == 0:
            if out:
                out[where % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and len(out) >= 4:
            struct.pack_into("<I", out, min(where, len(out) - 4), rng.choice(EXTREME_U32))
        elif choice == 2:
            del out[where:]
        elif choice == 3:
            length = rng.randint(1, 200)
            out[where:where] = out[where : where + length]
        elif choice == 4:
            out[where:where] = rng.randbytes(rng.randint(1, 64))
        elif choice == 5:
            end = where + rng.randint(1, 200)
            del out[where:end]
        else:
            out[where : where + 8] = rng.randbytes(8)
    if rng.random() < 0.5:
        reframe(out, header_bytes)
    if rng.random() < 0.3 and len(out) >= 4:
        # An index file's trailing checksum, recomputed: the decoder behind it is reached.
        struct.pack_into("<I", out, len(out) - 4, zlib.crc32(out[:-4]))
    return bytes(out)


# -- the target --------------------------------------------------------------------------------


def _allowed(call: Callable[[], object]) -> None:
    # A forged segment header may claim a keyed chain: opened without a key, the journal
    # asks for it (JournalKeyMissing), which is as much a refusal as JournalCorrupted.
    with contextlib.suppress(RecordError, JournalCorrupted, JournalKeyMissing):
        call()


def _frames(data: bytes, start: int) -> None:
    offset = start
    while offset < len(data):
        try:
            body_start, body_end = read_frame(data, offset)
        except RecordError:
            return
        body = data[body_start:body_end]
        _allowed(lambda: decode_event(body))  # noqa: B023 (called at once, in this iteration)
        _allowed(lambda: decode_commit(body))  # noqa: B023 (called at once)
        _allowed(lambda: decode_snapshot(body))  # noqa: B023 (called at once)
        offset = body_end


def decode_everything(data: bytes) -> None:
    """Run every decoder on ``data``; raise FuzzFailure on an exception that is not ours."""
    try:
        _allowed(lambda: decode_segment_header(data))
        _allowed(lambda: check_snapshot_file_header(data))
        _allowed(lambda: decode_index_file(data))
        _frames(data, 64)
        _frames(data, 16)
        for is_last in (True, False):
            _allowed(
                lambda is_last=is_last: scan_segment(  # type: ignore[misc]
                    data,
                    "fuzz.log",
                    first_position=1,
                    previous_hash=ZERO_HASH,
                    key=None,
                    versions={},
                    is_last=is_last,
                )
            )
    except Exception as error:
        raise FuzzFailure(f"{type(error).__name__}: {error}") from error


async def _open_and_read(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        async for _ in journal.read_all():
            pass
        for number in range(5):
            await journal.load_snapshot(f"stream-{number}")
            async for _ in journal.read_chunks(f"stream-{number}"):
                pass


def open_directory_with(name: str, data: bytes, work: Path) -> None:
    """Put ``data`` in place of file ``name`` of the corpus journal; open, read and verify it."""
    directory = work / "journal"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    for role, content in corpus().items():
        if role.startswith("file:"):
            (directory / role[5:]).write_bytes(data if role[5:] == name else content)
    try:
        with contextlib.suppress(JournalKeyMissing):  # verify reports damage, never raises it
            verify_journal(directory)
        _allowed(lambda: anyio.run(_open_and_read, directory))
    except Exception as error:
        raise FuzzFailure(f"{name}: {type(error).__name__}: {error}") from error


@dataclass
class FuzzReport:
    inputs: int = 0
    directories: int = 0
    slowest_s: float = 0.0
    slowest_seed: int | None = None
    peak_ratio: float = 0.0
    failures: list[tuple[int, str]] = field(default_factory=list)


ROLES = ("sealed", "index", "last", "snapshots")


def fuzz_one(
    seed: int, work: Path, report: FuzzReport, *, open_directory: bool, role: str | None = None
) -> None:
    """One input from ``seed``: mutate a corpus file, decode it, maybe open a directory with it.

    ``role`` picks the kind of file (``ROLES``); by default the seed picks it.
    """
    rng = random.Random(seed)
    files = corpus()
    chosen = rng.choice(ROLES)
    role = role or chosen
    header = 16 if role == "snapshots" else 64
    data = mutate(files[role], rng, header_bytes=header)
    started = time.perf_counter()
    try:
        decode_everything(data)
    except FuzzFailure as failure:
        report.failures.append((seed, f"{role}: {failure}"))
        return
    elapsed_s = time.perf_counter() - started
    if elapsed_s > report.slowest_s:
        report.slowest_s, report.slowest_seed = elapsed_s, seed
    # Memory is measured on a second decode of the same input: what the first one allocates
    # once for the process (caches, or a coverage tracer's record of lines run for the first
    # time, which took a small input's first decode past the bound) is not the input's doing.
    tracemalloc.start()
    try:
        decode_everything(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    report.inputs += 1
    # Decoding may copy the input a few times; a length field must never size an allocation.
    ratio = peak / (len(data) + 4096)
    report.peak_ratio = max(report.peak_ratio, ratio)
    if ratio > MEMORY_RATIO_MAX:
        report.failures.append(
            (seed, f"{role}: peak memory {ratio:.1f}x the input size, above {MEMORY_RATIO_MAX:g}x")
        )
    if open_directory:
        name = {
            "sealed": "00000000000000000001.log",
            "index": "00000000000000000001.idx",
            "snapshots": "snapshots.dat",
            "last": max(k[5:] for k in files if k.startswith("file:") and k.endswith(".log")),
        }[role]
        try:
            open_directory_with(name, data, work)
        except FuzzFailure as failure:
            report.failures.append((seed, f"directory, {role}: {failure}"))
        report.directories += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument(
        "--directory-every", type=positive_int, default=10, help="open a directory every N inputs"
    )
    arguments = parser.parse_args(argv)
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    # Recovery logs each torn tail it cuts; thousands are expected here.
    logging.getLogger("journals").setLevel(logging.ERROR)
    corpus()
    report = FuzzReport()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        # One input at least, so that ``--seed S --seconds 0`` reproduces the input of seed S.
        while report.inputs + len(report.failures) == 0 or (
            time.monotonic() - started < arguments.seconds
        ):
            fuzz_one(
                seed + report.inputs + len(report.failures),
                Path(work),
                report,
                open_directory=report.inputs % arguments.directory_every == 0,
            )
    elapsed = time.monotonic() - started
    print(
        f"fuzz_decoder: first seed {seed}, {report.inputs} inputs in {elapsed:.0f} s "
        f"({report.inputs / elapsed:.0f}/s), {report.directories} directories opened, "
        f"slowest input {report.slowest_s * 1000:.1f} ms (seed {report.slowest_seed}), "
        f"peak memory {report.peak_ratio:.1f}x input size, failures {len(report.failures)}"
    )
    for failing_seed, message in report.failures[:20]:
        print(f"failure (seed {failing_seed}): {message}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
