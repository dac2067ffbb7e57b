"""The harness's statistics: medians with min-max, nearest-rank percentiles, rates, windows."""

from __future__ import annotations

import pytest

from benchmarks.harness._drive import Window
from benchmarks.harness._stats import (
    latency_percentiles_ms,
    percentile,
    percentile_label,
    rate_per_s,
    summarize,
)


def test_summary_is_the_median_with_min_and_max() -> None:
    summary = summarize([3.0, 1.0, 10.0])
    assert (summary.median, summary.minimum, summary.maximum) == (3.0, 1.0, 10.0)
    assert summary.samples == (3.0, 1.0, 10.0)
    assert summary.spread == pytest.approx(3.0)


def test_summary_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert summarize([1, 2, 3, 4]).median == 2.5


def test_summary_of_nothing_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="at least one repetition"):
        summarize([])


def test_percentiles_take_the_nearest_rank_never_an_interpolation() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    assert percentile(values, 100) == 1000
    assert percentile([7], 99.9) == 7


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_percentile_out_of_range_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1, 2, 3], percent)


def test_latency_percentiles_convert_nanoseconds_to_milliseconds() -> None:
    latencies = [1_000_000] * 98 + [5_000_000, 9_000_000]
    assert latency_percentiles_ms(latencies) == {50.0: 1.0, 99.0: 5.0, 99.9: 9.0}


def test_rates_need_a_positive_interval() -> None:
    assert rate_per_s(500, 250_000_000) == 2000.0
    with pytest.raises(ValueError, match="positive"):
        rate_per_s(1, 0)


def test_percentile_labels() -> None:
    assert [percentile_label(p) for p in (50.0, 99.0, 99.9)] == ["p50", "p99", "p99.9"]


def test_a_window_opens_when_every_caller_has_started_and_counts_what_completes_in_it() -> None:
    window = Window(callers=2, duration_ns=100)
    window.completed(0, 10, first=True)
    window.completed(5, 15, first=False)  # before the window opens: not counted
    window.completed(0, 20, first=True)  # the last first completion opens the window
    window.completed(15, 60, first=False)
    window.completed(20, 100, first=False)
    window.completed(60, 121, first=False)  # after it closed (20 + 100): not counted
    measured = window.result()
    assert measured.latencies_ns == [45, 80]
    assert measured.elapsed_ns == 80, "from the opening to the last completion in the window"
    assert measured.rate_per_s == pytest.approx(2.5e7)


def test_a_slow_ramp_makes_the_window_at_least_as_long_as_the_ramp() -> None:
    window = Window(callers=1, duration_ns=10, released_ns=0)
    window.completed(0, 100, first=True)  # a ramp of 100: the window closes at 200
    window.completed(100, 150, first=False)
    window.completed(150, 200, first=False)
    window.completed(200, 201, first=False)
    assert window.result().latencies_ns == [50, 50]


def test_a_window_that_would_close_empty_stays_open_until_a_completion() -> None:
    window = Window(callers=1, duration_ns=10, released_ns=100)
    window.completed(100, 101, first=True)
    window.completed(101, 500, first=False)
    window.completed(500, 900, first=False)
    measured = window.result()
    assert measured.latencies_ns == [399]
    assert measured.elapsed_ns == 399


def test_a_round_where_not_every_caller_started_has_no_figures() -> None:
    window = Window(callers=2, duration_ns=10)
    window.completed(0, 100, first=True)
    with pytest.raises(RuntimeError, match="before every caller"):
        window.result()
