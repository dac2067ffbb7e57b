"""The reopen benchmark runs, and finds the index files the journal wrote all usable."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reopen_bench import Shape, measure


def test_reopen_bench_measures_opens_with_and_without_index_files(tmp_path: Path) -> None:
    shape = Shape("short streams", 2_000, 300, 1, 16 * 1024)
    line = measure(tmp_path / "journal", shape, rounds=2)
    assert line.startswith("short streams: 2,000 events, 300 streams, ")
    assert "open from index files median" in line
    assert "index files rebuilt)" in line
    assert not list((tmp_path / "journal").glob("*.idx.tmp"))
