"""The harness's statistics: medians with min-max, nearest-rank percentiles, rates, windows."""

from __future__ import annotations

import pytest

from benchmarks.harness._drive import events_per_fsync
from benchmarks.harness._stats import (
    latency_percentiles_ms,
    percentile,
    percentile_label,
    rate_per_s,
    summarize,
)
from benchmarks.harness._windows import Windows
from journals import JournalStatistics


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


def test_windows_open_when_every_caller_has_started_and_follow_one_another() -> None:
    windows = Windows(callers=2, count=2, duration_ns=100)
    windows.completed(0, 10, first=True)
    windows.completed(5, 15, first=False)  # before the first window opens: not counted
    windows.completed(0, 20, first=True)  # the last first completion opens it, at 20
    windows.completed(15, 60, first=False)
    windows.completed(20, 100, first=False)  # window 1 is (20, 120]
    windows.completed(60, 130, first=False)  # window 2 is (120, 220]
    windows.completed(100, 200, first=False)
    windows.completed(130, 221, first=False)  # after the last window: not counted
    first, second = windows.rounds()
    assert first.latencies_ns == [45, 80]
    assert first.elapsed_ns == 80, "from the opening to the window's last completion"
    assert second.latencies_ns == [70, 100]
    assert second.elapsed_ns == 100, "from the previous window's last completion to its own"
    assert first.rate_per_s == pytest.approx(2.5e7)


def test_a_slow_ramp_makes_each_window_at_least_as_long_as_the_ramp() -> None:
    windows = Windows(callers=1, count=1, duration_ns=10, released_ns=0)
    windows.completed(0, 100, first=True)  # a ramp of 100: the window closes at 200
    windows.completed(100, 150, first=False)
    windows.completed(150, 200, first=False)
    windows.completed(200, 201, first=False)
    assert [r.latencies_ns for r in windows.rounds()] == [[50, 50]]


def test_an_empty_window_merges_into_the_next_and_the_last_waits_for_a_completion() -> None:
    windows = Windows(callers=1, count=3, duration_ns=10, released_ns=100)
    windows.completed(100, 101, first=True)  # windows of 10 from 101
    windows.completed(101, 115, first=False)  # window 1
    windows.completed(115, 500, first=False)  # past every window: the last one takes it
    windows.completed(500, 900, first=False)  # the last window is no longer empty
    first, rest = windows.rounds()
    assert (first.latencies_ns, first.elapsed_ns) == ([14], 14)
    assert (rest.latencies_ns, rest.elapsed_ns) == ([385], 385)


def test_probes_give_each_window_its_own_counters() -> None:
    counter = iter(range(100))
    windows = Windows(callers=1, count=2, duration_ns=10, probe=lambda: next(counter))
    windows.completed(0, 0, first=True)  # probe 0 at the opening
    windows.completed(0, 5, first=False)
    windows.completed(5, 15, first=False)  # probe 1 at the first completion of window 2
    windows.finish()  # probe 2 at the end
    rounds = windows.rounds(lambda before, after: float(after - before))
    assert [r.events_per_fsync for r in rounds] == [1.0, 1.0]


def test_the_cpu_clock_gives_each_window_its_cpu_time_per_operation() -> None:
    samples = iter([1_000, 1_600, 2_500])  # CPU ns at the opening, window 2, the end
    windows = Windows(callers=1, count=2, duration_ns=10, cpu_clock=lambda: next(samples))
    windows.completed(0, 0, first=True)
    windows.completed(0, 4, first=False)
    windows.completed(4, 8, first=False)  # window 1: two operations, 600 ns of CPU
    windows.completed(8, 15, first=False)  # window 2: one operation, 900 ns of CPU
    windows.finish()
    assert [r.loop_cpu_ns_per_op for r in windows.rounds()] == [300.0, 900.0]
    assert [r.loop_cpu_ns_per_op for r in _without_clock().rounds()] == [None]


def test_the_last_window_is_not_charged_for_what_completes_after_it_closed() -> None:
    cpu = [1_000]  # CPU ns, read at each sample
    windows = Windows(callers=1, count=2, duration_ns=10, cpu_clock=lambda: cpu[0])
    windows.completed(0, 0, first=True)
    windows.completed(0, 4, first=False)
    windows.completed(4, 8, first=False)  # window 1: two operations, 600 ns of CPU
    cpu[0] = 1_600
    windows.completed(8, 15, first=False)  # window 2: one operation, 900 ns of CPU
    cpu[0] = 2_500
    windows.closed()  # a caller finds the windows closed
    cpu[0] = 9_000  # the operations still in flight complete: outside every window
    windows.finish()
    assert [r.loop_cpu_ns_per_op for r in windows.rounds()] == [300.0, 900.0]


def _without_clock() -> Windows:
    windows = Windows(callers=1, count=1, duration_ns=10)
    windows.completed(0, 0, first=True)
    windows.completed(0, 5, first=False)
    windows.finish()
    return windows


def test_callers_that_never_all_started_give_no_figures() -> None:
    windows = Windows(callers=2, count=1, duration_ns=10)
    windows.completed(0, 100, first=True)
    with pytest.raises(RuntimeError, match="before every caller"):
        windows.rounds()


def test_completions_recorded_slightly_out_of_order_land_in_their_window() -> None:
    windows = Windows(callers=1, count=2, duration_ns=100)
    windows.completed(0, 0, first=True)
    windows.completed(0, 90, first=False)
    windows.completed(0, 110, first=False)  # window 2
    windows.completed(0, 95, first=False)  # read its clock before the one above
    windows.completed(0, 150, first=False)
    first, second = windows.rounds()
    assert first.latencies_ns == [90, 95]
    assert second.latencies_ns == [110, 150]


def test_events_per_fsync_of_a_window_counts_only_the_fsyncs_of_batches() -> None:
    def stats(events: int, fsyncs: int, batch_fsyncs: int) -> JournalStatistics:
        return JournalStatistics(
            streams=1,
            events=events,
            head_position=events,
            appends=events,
            appended_events=events,
            batches=batch_fsyncs,
            fsyncs=fsyncs,
            bytes_written=0,
            index_bytes=0,
            batch_fsyncs=batch_fsyncs,
        )

    # 20 events in 20 batches, and 19 fsyncs of snapshots and a segment roll besides.
    assert events_per_fsync(stats(0, 0, 0), stats(20, 39, 20)) == 1.0
    assert events_per_fsync(stats(20, 39, 20), stats(20, 45, 20)) is None
