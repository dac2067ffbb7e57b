"""Ratios to the machine's limits and to the peer, and the targets, from synthetic results."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.harness._ratios import bare_loop_ratios, limit_ratios, peer_ratios, target_checks
from benchmarks.harness._results import Figure, ScenarioResult
from benchmarks.harness._stats import summarize


def figure(scenario: str, name: str, value: float, durable: bool = True, **at: Any) -> Figure:
    return Figure(scenario, name, name, "/s", summarize([value]), at, durable)


def limits() -> ScenarioResult:
    return ScenarioResult(
        "limits",
        "limits",
        figures=(
            figure("limits", "fdatasync_per_s", 5_000),
            figure("limits", "fdatasync_latency_ms", 0.2),
            figure("limits", "orjson_encode_per_s", 1_000_000),
            figure("limits", "orjson_decode_per_s", 2_000_000),
        ),
    )


def test_throughput_is_divided_by_the_fsync_loop_and_the_orjson_rate() -> None:
    many = ScenarioResult("many-actors", "", figures=(
        figure("many-actors", "commands_per_s", 100_000, callers=100),
        figure("many-actors", "latency_ms_p50", 1.0, callers=100),
    ))  # fmt: skip
    ratios = {(r.numerator, r.denominator): r for r in limit_ratios([limits(), many])}
    by_fsync = ratios[("many-actors.commands_per_s[callers=100]", "limits.fdatasync_per_s")]
    assert by_fsync.value == pytest.approx(20.0)
    assert by_fsync.text == "20x"
    by_encode = ratios[("many-actors.commands_per_s[callers=100]", "limits.orjson_encode_per_s")]
    assert by_encode.percent
    assert by_encode.text == "10 %"
    latency = ratios[("many-actors.latency_ms_p50[callers=100]", "limits.fdatasync_latency_ms")]
    assert latency.value == pytest.approx(5.0)


def test_a_single_appender_is_held_to_six_tenths_of_the_fsync_loop() -> None:
    journal = ScenarioResult("journal", "", figures=(
        figure("journal", "events_per_s", 4_000, appenders=1),
        figure("journal", "events_per_s", 90_000, appenders=100),
    ))  # fmt: skip
    targets = {r.numerator: r.target for r in limit_ratios([limits(), journal])
               if r.denominator == "limits.fdatasync_per_s"}  # fmt: skip
    assert targets == {
        "journal.events_per_s[appenders=1]": 0.6,
        "journal.events_per_s[appenders=100]": None,
    }


def test_the_runtime_is_read_against_the_bare_loop_at_the_same_point() -> None:
    bare = ScenarioResult("bare-loop", "", figures=(
        figure("bare-loop", "commands_per_s", 200_000, shape="hot-actor", in_flight=1000),
        figure("bare-loop", "commands_per_s", 160_000, shape="many-actors", callers=1000),
    ))  # fmt: skip
    hot = ScenarioResult("hot-actor", "", figures=(
        figure("hot-actor", "commands_per_s", 130_000, in_flight=1000),
        figure("hot-actor", "latency_ms_p50", 8.0, in_flight=1000),
    ))  # fmt: skip
    many = ScenarioResult("many-actors", "", figures=(
        figure("many-actors", "commands_per_s", 120_000, callers=1000),
        figure("many-actors", "commands_per_s", 90_000, callers=10_000),  # No bare point.
    ))  # fmt: skip
    ratios = {
        (r.numerator, r.denominator): r.value for r in bare_loop_ratios([limits(), bare, hot, many])
    }
    assert ratios == {
        (
            "hot-actor.commands_per_s[in_flight=1000]",
            "bare-loop.commands_per_s[shape=hot-actor][in_flight=1000]",
        ): pytest.approx(0.65),
        (
            "many-actors.commands_per_s[callers=1000]",
            "bare-loop.commands_per_s[shape=many-actors][callers=1000]",
        ): pytest.approx(0.75),
    }
    # The bare loop is a baseline: it is not itself divided by the machine's limits.
    assert not [r for r in limit_ratios([limits(), bare]) if r.numerator.startswith("bare-loop")]


def test_without_limits_there_are_no_limit_ratios() -> None:
    many = ScenarioResult("many-actors", "", figures=(figure("many-actors", "commands_per_s", 1),))
    assert limit_ratios([many]) == []


def test_peer_ratios_compare_best_with_best_and_replay_with_replay() -> None:
    many = ScenarioResult("many-actors", "", figures=(
        figure("many-actors", "commands_per_s", 30_000, callers=1),
        figure("many-actors", "commands_per_s", 90_000, callers=100),
    ))  # fmt: skip
    recovery = ScenarioResult("recovery", "", figures=(
        figure("recovery", "replay_events_per_s", 400_000, streams="one long", snapshots="no"),
        figure("recovery", "replay_events_per_s", 100_000, streams="many short", snapshots="no"),
    ))  # fmt: skip
    peer = ScenarioResult("peer", "", figures=(
        figure("peer", "commands_per_s", 3_000, callers=1),
        figure("peer", "commands_per_s", 2_000, callers=4),
        figure("peer", "replay_events_per_s", 50_000, streams="one long"),
        figure("peer", "replay_events_per_s", 25_000, streams="many short"),
    ))  # fmt: skip
    ratios = peer_ratios([many, recovery, peer])
    assert [(r.numerator, r.denominator, r.value, r.target) for r in ratios] == [
        ("many-actors.commands_per_s[callers=100]", "peer.commands_per_s[callers=1]", 30.0, 25.0),
        ("many-actors.commands_per_s[callers=1]", "peer.commands_per_s[callers=1]", 10.0, None),
        ("recovery.replay_events_per_s[streams=one long][snapshots=no]",
         "peer.replay_events_per_s[streams=one long]", 8.0, 8.0),
        ("recovery.replay_events_per_s[streams=many short][snapshots=no]",
         "peer.replay_events_per_s[streams=many short]", 4.0, 8.0),
    ]  # fmt: skip


def test_a_not_durable_figure_is_labelled_and_held_to_no_target() -> None:
    many = ScenarioResult("many-actors", "", figures=(
        figure("many-actors", "commands_per_s", 300_000, durable=False, callers=100),
    ))  # fmt: skip
    recovery = ScenarioResult("recovery", "", figures=(
        figure("recovery", "replay_events_per_s", 500_000, durable=False,
               streams="one long", snapshots="no"),
    ))  # fmt: skip
    peer = ScenarioResult("peer", "", figures=(
        figure("peer", "commands_per_s", 3_000, callers=1),
        figure("peer", "replay_events_per_s", 50_000, streams="one long"),
    ))  # fmt: skip
    ratios = peer_ratios([many, recovery, peer])
    assert len(ratios) == 2
    for ratio in ratios:
        assert "NOT DURABLE" in ratio.label
        assert ratio.target is None
    assert target_checks([many, recovery]) == []


def test_targets_are_checked_in_their_direction() -> None:
    activation = ScenarioResult("activation", "", figures=(
        figure("activation", "activations_per_s", 150_000),
        figure("activation", "bytes_per_idle_actor", 700),
    ))  # fmt: skip
    checks = {check.figure: check.met for check in target_checks([activation])}
    assert checks == {
        "activation.activations_per_s": True,
        "activation.bytes_per_idle_actor": False,
    }
