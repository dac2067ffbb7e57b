"""Reopening a journal of many sealed segments: what index files save, and what checking costs.

    python -m benchmarks.reopen_bench [--quick] [--rounds N]

Builds two journals (not durable, so they build fast) and opens each several times:

* long streams: 1,000,000 events of 50 streams, 100 per append, in segments of 4 MiB;
* short streams: 300,000 events of 100,000 streams, one per append, in segments of 1 MiB, so
  about 5,000 stream entries per segment: the worst case for checking the stream versions an
  index file gives (one record per stream of a segment).

For each it prints the median and the best of the opens that use the index files, then one
open with every index file removed (every sealed segment scanned, its index file rebuilt).
Nothing is asserted: the figures are for people, and vary with the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from benchmarks._arguments import positive_int
from journals import FileJournal, NewEvent

# About 150 bytes of event data once encoded, as in journal_bench.
PAYLOAD = {
    "account": "acc-0000012345",
    "amount_cents": 125_000,
    "currency": "EUR",
    "reference": "invoice 2026-11-000042 / batch 7",
    "note": "monthly settlement",
}
_WRITERS = 50


@dataclass(frozen=True, slots=True)
class Shape:
    label: str
    events: int
    streams: int
    per_append: int
    segment_bytes_max: int


SHAPES = (
    Shape("long streams", 1_000_000, 50, 100, 4 * 1024 * 1024),
    Shape("short streams", 300_000, 100_000, 1, 1024 * 1024),
)


async def fill(directory: Path, shape: Shape) -> None:
    """Write ``shape.events`` events, ``_WRITERS`` tasks appending to streams in turn."""
    batch = [NewEvent("Deposited", PAYLOAD)] * shape.per_append
    appends = shape.events // shape.per_append // _WRITERS
    async with FileJournal(
        directory, durable=False, segment_bytes_max=shape.segment_bytes_max
    ) as journal:

        async def writer(task: int) -> None:
            for number in range(appends):
                stream = f"account-{(task + number * _WRITERS) % shape.streams}"
                await journal.append(stream, batch, expected_version=None)

        async with anyio.create_task_group() as group:
            for task in range(_WRITERS):
                group.start_soon(writer, task)


async def open_once(directory: Path) -> tuple[float, int, int, int]:
    """Seconds to open, events, segments, index files rebuilt."""
    started = time.perf_counter()
    async with FileJournal(directory) as journal:
        elapsed = time.perf_counter() - started
        report = journal.recovery_report
    return elapsed, report.events, report.segments, len(report.rebuilt_indexes)


def measure(directory: Path, shape: Shape, rounds: int) -> str:
    anyio.run(fill, directory, shape)
    opens = [anyio.run(open_once, directory) for _ in range(rounds)]
    times = [elapsed for elapsed, _, _, _ in opens]
    _, events, segments, rebuilt = opens[-1]
    assert rebuilt == 0, "an index file written by the journal itself was rebuilt"
    for index_file in directory.glob("*.idx"):
        index_file.unlink()
    scanned, _, _, rebuilt = anyio.run(open_once, directory)
    return (
        f"{shape.label}: {events:,} events, {shape.streams:,} streams, {segments} segments; "
        f"open from index files median {statistics.median(times):.3f} s, best "
        f"{min(times):.3f} s ({rounds} opens); without them {scanned:.3f} s "
        f"({rebuilt} index files rebuilt)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the events")
    parser.add_argument(
        "--rounds", type=positive_int, default=7, help="opens per journal (default 7)"
    )
    parser.add_argument(
        "--directory", type=Path, help="where to write (default: a temporary directory)"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.directory) as scratch:
        for number, shape in enumerate(SHAPES):
            if arguments.quick:
                shape = Shape(
                    shape.label,
                    shape.events // 10,
                    max(1, shape.streams // 10),
                    shape.per_append,
                    shape.segment_bytes_max // 8,
                )
            directory = Path(scratch) / f"journal-{number}"
            print(measure(directory, shape, arguments.rounds), flush=True)


if __name__ == "__main__":
    main()
