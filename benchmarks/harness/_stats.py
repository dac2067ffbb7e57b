"""Repetition and summary statistics: medians with min-max, latency percentiles.

Pure functions over numbers; nothing here measures anything by itself.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES = (50.0, 99.0, 99.9)
"""The latency percentiles every scenario reports."""


@dataclass(frozen=True, slots=True)
class Summary:
    """The median of several repetitions, with their minimum and maximum."""

    median: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]

    @property
    def spread(self) -> float:
        """(max - min) / median: 0 for perfectly stable repetitions."""
        return (self.maximum - self.minimum) / self.median if self.median else 0.0


def summarize(samples: Sequence[float]) -> Summary:
    """Summarize the figures of several repetitions of one measurement."""
    if not samples:
        raise ValueError("cannot summarize an empty list of samples; run at least one repetition")
    values = tuple(float(value) for value in samples)
    return Summary(statistics.median(values), min(values), max(values), values)


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of already sorted values (0 < percent <= 100).

    Nearest rank never invents a value between two observations, so p99.9 of 1,000 latencies
    is the slowest one, not an interpolation.
    """
    if not sorted_values:
        raise ValueError("cannot take a percentile of no values")
    if not 0.0 < percent <= 100.0:
        raise ValueError(f"a percentile is in (0, 100], not {percent}")
    # Rounded first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point.
    rank = math.ceil(round(percent / 100.0 * len(sorted_values), 9))
    return float(sorted_values[max(rank, 1) - 1])


def latency_percentiles_ms(latencies_ns: Sequence[int]) -> dict[float, float]:
    """p50/p99/p99.9 of latencies given in nanoseconds, in milliseconds."""
    ordered = sorted(latencies_ns)
    return {p: percentile(ordered, p) / 1_000_000.0 for p in PERCENTILES}


def rate_per_s(count: int, elapsed_ns: int) -> float:
    """``count`` operations in ``elapsed_ns`` nanoseconds, as operations per second."""
    if elapsed_ns <= 0:
        raise ValueError(f"a measured interval must be positive, not {elapsed_ns} ns")
    return count * 1_000_000_000 / elapsed_ns


def percentile_label(percent: float) -> str:
    """'p50', 'p99', 'p99.9'."""
    return f"p{percent:g}"
