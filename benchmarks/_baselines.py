"""Disk baselines measured in the same run as the journal benchmarks.

The journal's durable-append speed only means something next to what the disk itself does, so
every benchmark prints ratios against these loops, run on the same machine a moment earlier.
The functions' signatures are stable: the benchmark harness imports them.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BaselineResult:
    """What a baseline loop measured: ``operations`` durable writes in ``elapsed_s`` seconds."""

    name: str
    operations: int
    record_bytes: int
    elapsed_s: float

    @property
    def operations_per_s(self) -> float:
        return self.operations / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def latency_us_mean(self) -> float:
        return self.elapsed_s / self.operations * 1e6 if self.operations else 0.0


def write_fdatasync_loop(
    directory: str | os.PathLike[str] | None = None,
    *,
    operations: int = 2_000,
    record_bytes: int = 150,
    pre_zeroed: bool = False,
) -> BaselineResult:
    """Append ``record_bytes`` with ``os.write`` then ``os.fdatasync``, ``operations`` times.

    This is the disk's durable-append rate for one writer with no batching: the ceiling for a
    single sequential appender. With ``pre_zeroed`` the file is first filled with zeros and
    fsynced, so fdatasync does not have to persist a growing file size (usually faster).
    ``directory`` defaults to a fresh temporary directory, removed afterwards.
    """
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        path = Path(scratch) / "baseline.dat"
        record = b"x" * record_bytes
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if pre_zeroed:
                os.write(fd, bytes(operations * record_bytes))
                os.fsync(fd)
                os.lseek(fd, 0, os.SEEK_SET)
            start = time.perf_counter()
            for _ in range(operations):
                written = os.write(fd, record)
                if written != record_bytes:
                    raise OSError(f"short write of {written} bytes in the baseline loop")
                os.fdatasync(fd)
            elapsed = time.perf_counter() - start
        finally:
            os.close(fd)
    name = "write+fdatasync (pre-zeroed file)" if pre_zeroed else "write+fdatasync"
    return BaselineResult(name, operations, record_bytes, elapsed)


def fdatasync_rate(
    directory: str | os.PathLike[str] | None = None, *, seconds: float = 1.0
) -> float:
    """fdatasyncs per second of 150-byte appends to a growing file, measured for ``seconds``."""
    probe = write_fdatasync_loop(directory, operations=200)
    operations = max(200, int(probe.operations_per_s * seconds))
    return write_fdatasync_loop(directory, operations=operations).operations_per_s


def main() -> None:
    for pre_zeroed in (False, True):
        result = write_fdatasync_loop(operations=3_000, pre_zeroed=pre_zeroed)
        print(
            f"{result.name:36} {result.operations_per_s:10,.0f} ops/s "
            f"{result.latency_us_mean:8.1f} us/op"
        )


if __name__ == "__main__":
    main()
