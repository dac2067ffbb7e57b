"""Which snapshots a compaction keeps: the pure rule of ``journals._snapshot_retention``."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from journals._snapshot_retention import (
    COMPACT_DEAD_BYTES_MIN,
    COMPACT_GROWTH_BYTES_MIN,
    COMPACT_GROWTH_FACTOR,
    grown_enough,
    retained,
    worth_compacting,
)

versions_lists = st.lists(st.integers(1, 5_000), min_size=1, max_size=60).map(sorted)


def _kept_versions(versions: list[int]) -> list[int]:
    return [versions[index] for index in retained(versions)]


@given(versions_lists)
def test_the_newest_and_the_oldest_are_kept_and_only_the_last_saved_of_equal_versions(
    versions: list[int],
) -> None:
    kept = retained(versions)
    assert kept == sorted(set(kept))
    assert kept[-1] == len(versions) - 1
    assert versions[kept[0]] == versions[0]
    for index in kept:
        # Of equal versions a load answers the last saved, so only that one is kept.
        assert index == len(versions) - 1 or versions[index + 1] > versions[index]


@given(versions_lists)
def test_a_stream_keeps_a_logarithmic_number_of_snapshots(versions: list[int]) -> None:
    assert len(retained(versions)) <= versions[-1].bit_length() + 2


@given(versions_lists, st.data())
def test_a_past_state_replays_at_most_three_times_its_distance_more(
    versions: list[int], data: st.DataObject
) -> None:
    """``load_snapshot(max_version=N)`` still answers a snapshot, and the one it answers is
    fewer than ``3 * (H - N)`` versions (plus the longest gap between the stream's snapshots)
    below the one it answered before the compaction."""
    newest = versions[-1]
    wanted = data.draw(st.integers(versions[0], newest + 10))
    kept = _kept_versions(versions)
    before = max(version for version in versions if version <= wanted)
    after = max(version for version in kept if version <= wanted)
    gaps = [later - earlier for earlier, later in itertools.pairwise(versions)]
    longest_gap = max(gaps, default=0)
    assert after <= before
    assert before - after <= max(0, 3 * (newest - wanted)) + longest_gap
    if wanted >= newest:
        assert after == newest


@given(st.lists(st.lists(st.integers(1, 3_000), min_size=1, max_size=30), min_size=1, max_size=5))
def test_compacting_in_steps_keeps_what_one_compaction_would_keep(
    rounds: list[list[int]],
) -> None:
    """Snapshots saved in rounds, compacted after each: the same as compacting once at the
    end. So no compaction drops a snapshot that a later one would have kept. Each snapshot is
    (version, save order); equal versions are kept in save order, as the store keeps them."""
    every: list[tuple[int, int]] = []
    stepwise: list[tuple[int, int]] = []
    order = 0
    for saved in rounds:
        for version in saved:
            order += 1
            every.append((version, order))
            stepwise.append((version, order))
        stepwise.sort()
        stepwise = [stepwise[index] for index in retained([v for v, _ in stepwise])]
    every.sort()
    once = [every[index] for index in retained([v for v, _ in every])]
    assert stepwise == once


def test_the_kept_versions_of_a_stream_snapshotted_every_hundred_events() -> None:
    versions = list(range(100, 10_001, 100))
    # Boundaries 4,096, 6,144, 8,192, 9,216, 9,728, 9,856, 9,920 ... 9,999 below 10,000.
    kept = [100, 4_000, 6_100, 8_100, 9_200, 9_700, 9_800, 9_900, 10_000]
    assert _kept_versions(versions) == kept
    assert _kept_versions(_kept_versions(versions)) == _kept_versions(versions)


def test_the_kept_versions_of_a_stream_snapshotted_at_every_event() -> None:
    # Boundaries 9 (k = 0), 8, 4 and 0 below 10: the one at k = 0 keeps the version before
    # the newest; none is kept of a stream with no snapshot.
    assert _kept_versions(list(range(1, 11))) == [1, 4, 8, 9, 10]
    assert retained([]) == []


def test_compacting_is_worth_it_once_the_dead_bytes_are_many_and_half_the_file() -> None:
    assert COMPACT_DEAD_BYTES_MIN == 1 << 20  # docs/ARCHITECTURE.md says 1 MiB.
    assert not worth_compacting(COMPACT_DEAD_BYTES_MIN - 1, COMPACT_DEAD_BYTES_MIN)
    assert worth_compacting(COMPACT_DEAD_BYTES_MIN, 2 * COMPACT_DEAD_BYTES_MIN)
    assert not worth_compacting(COMPACT_DEAD_BYTES_MIN, 2 * COMPACT_DEAD_BYTES_MIN + 1)


def test_a_save_looks_again_once_the_file_doubled_and_grew_a_mib() -> None:
    mib = COMPACT_GROWTH_BYTES_MIN
    assert COMPACT_GROWTH_FACTOR == 2
    assert not grown_enough(mib - 1, 0)  # A small new file: not a MiB yet.
    assert grown_enough(mib, 0)
    assert grown_enough(mib + 16, 16)
    assert not grown_enough(2 * mib - 1, mib)  # A MiB more, short of twice.
    assert grown_enough(2 * mib, mib)
    assert not grown_enough(mib // 2, mib // 4)  # Twice, short of a MiB more.
    assert not grown_enough(3 * mib // 2, 3 * mib // 4)  # Twice and past a MiB, not a MiB more.
    assert not grown_enough(10 * mib, 10 * mib)  # Compacted to nothing dropped.
