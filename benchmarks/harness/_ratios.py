"""Ratios between figures of one run, and the project's targets set against them.

Pure functions over scenario results: every ratio divides two medians of the same run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._results import Figure, Ratio, ScenarioResult, TargetCheck

_LIMITS = "limits"
_BARE_LOOP = "bare-loop"

# Which machine limit each kind of figure is compared to, and how the ratio reads.
_LIMIT_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "commands_per_s": (
        ("fdatasync_per_s", "x the write+fdatasync loop"),
        ("orjson_encode_per_s", "of the orjson encode rate"),
    ),
    "events_per_s": (
        ("fdatasync_per_s", "x the write+fdatasync loop"),
        ("orjson_encode_per_s", "of the orjson encode rate"),
    ),
    "replay_events_per_s": (("orjson_decode_per_s", "of the orjson decode rate"),),
    "latency_ms_p50": (("fdatasync_latency_ms", "x the write+fdatasync latency"),),
    "latency_ms_p99": (("fdatasync_latency_ms", "x the write+fdatasync latency"),),
    "latency_ms_p99.9": (("fdatasync_latency_ms", "x the write+fdatasync latency"),),
}

SINGLE_APPENDER_TARGET = 0.6
"""A single sequential appender reaches at least this fraction of the plain fsync loop."""

PEER_COMMANDS_TARGET = 25.0
PEER_REPLAY_TARGET = 8.0


def find(
    scenarios: Iterable[ScenarioResult], scenario: str, name: str, **parameters: Any
) -> Figure | None:
    """The figure ``scenario.name`` at exactly ``parameters``, or None when it was not run."""
    for result in scenarios:
        if result.name != scenario:
            continue
        for figure in result.figures:
            if figure.name == name and dict(figure.parameters) == parameters:
                return figure
    return None


def _describe(figure: Figure) -> str:
    where = ", ".join(f"{name}={value}" for name, value in figure.parameters.items())
    text = f"{figure.scenario} {figure.label}" + (f" ({where})" if where else "")
    return text if figure.durable else text + " [NOT DURABLE]"


def _ratio(
    numerator: Figure, denominator: Figure, reads: str, kind: str, target: float | None = None
) -> Ratio | None:
    """``numerator / denominator``; read as a share when ``reads`` starts with "of"."""
    if denominator.summary.median <= 0:
        return None
    return Ratio(
        subject=_describe(numerator),
        reads=reads,
        value=numerator.summary.median / denominator.summary.median,
        numerator=numerator.key,
        denominator=denominator.key,
        kind=kind,
        target=target,
        percent=reads.startswith("of "),
    )


def limit_ratios(scenarios: Sequence[ScenarioResult]) -> list[Ratio]:
    """Every throughput and latency figure as a ratio to the machine limit it is bounded by."""
    ratios = []
    for result in scenarios:
        if result.name in (_LIMITS, _BARE_LOOP):
            continue  # Baselines themselves.
        for figure in result.figures:
            for limit_name, reads in _LIMIT_RULES.get(figure.name, ()):
                limit = find(scenarios, _LIMITS, limit_name)
                if limit is None:
                    continue
                single = figure.scenario == "journal" and figure.parameters == {"appenders": 1}
                target = (
                    SINGLE_APPENDER_TARGET
                    if single and limit_name == "fdatasync_per_s" and figure.durable
                    else None
                )
                ratio = _ratio(figure, limit, reads, "limit", target)
                if ratio is not None:
                    ratios.append(ratio)
    return ratios


_AGAINST_BARE_LOOP = ("hot-actor", "many-actors")


_BARE_LOOP_READS = {
    "commands_per_s": "x the bare loop (same commands, no runtime)",
    "loop_cpu_us": "x the bare loop's (same commands, no runtime)",
}


def bare_loop_ratios(scenarios: Sequence[ScenarioResult]) -> list[Ratio]:
    """The runtime's commands/s, and its event loop's CPU time per command, against the bare
    loop's at the same point."""
    ratios = []
    for result in scenarios:
        if result.name not in _AGAINST_BARE_LOOP:
            continue
        for figure in result.figures:
            reads = _BARE_LOOP_READS.get(figure.name)
            if reads is None:
                continue
            bare = find(
                scenarios, _BARE_LOOP, figure.name, shape=result.name, **dict(figure.parameters)
            )
            if bare is None:
                continue
            ratio = _ratio(figure, bare, reads, "limit")
            if ratio is not None:
                ratios.append(ratio)
    return ratios


def _best(figures: Iterable[Figure | None]) -> Figure | None:
    present = [figure for figure in figures if figure is not None]
    return max(present, key=lambda figure: figure.summary.median, default=None)


def _all_named(scenarios: Sequence[ScenarioResult], scenario: str, name: str) -> list[Figure]:
    return [
        figure
        for result in scenarios
        if result.name == scenario
        for figure in result.figures
        if figure.name == name
    ]


def peer_ratios(scenarios: Sequence[ScenarioResult]) -> list[Ratio]:
    """eventfold against the peer: best durable commands/s of each, and replay events/s."""
    ratios = []
    ours = _best(_all_named(scenarios, "many-actors", "commands_per_s"))
    theirs = _best(_all_named(scenarios, "peer", "commands_per_s"))
    if ours is not None and theirs is not None:
        target = PEER_COMMANDS_TARGET if ours.durable else None
        ratio = _ratio(ours, theirs, f"x the peer's best ({_describe(theirs)})", "peer", target)
        if ratio is not None:
            ratios.append(ratio)
    # The same comparison at one caller each: what is left without group commit's help.
    ours, theirs = (find(scenarios, name, "commands_per_s", callers=1)
                    for name in ("many-actors", "peer"))  # fmt: skip
    if ours is not None and theirs is not None:
        ratio = _ratio(ours, theirs, "x the peer's, one caller each", "peer")
        if ratio is not None:
            ratios.append(ratio)
    for streams in ("one long", "many short"):
        ours = find(scenarios, "recovery", "replay_events_per_s", streams=streams, snapshots="no")
        theirs = find(scenarios, "peer", "replay_events_per_s", streams=streams)
        if ours is not None and theirs is not None:
            reads = f"x the peer's ({_describe(theirs)})"
            target = PEER_REPLAY_TARGET if ours.durable else None
            ratio = _ratio(ours, theirs, reads, "peer", target)
            if ratio is not None:
                ratios.append(ratio)
    return ratios


# (label, scenario, figure name, parameters, target, higher is better)
_TARGETS: tuple[tuple[str, str, str, dict[str, Any], float, bool], ...] = (
    (
        "journal: durable events/s, 100 appenders",
        "journal",
        "events_per_s",
        {"appenders": 100},
        100_000,
        True,
    ),
    (
        "journal: durable events/s, 10,000 appenders",
        "journal",
        "events_per_s",
        {"appenders": 10_000},
        100_000,
        True,
    ),
    (
        "journal: reopen of 1,000,000 events (s)",
        "recovery",
        "reopen_s",
        {"events": 1_000_000},
        2.0,
        False,
    ),
    (
        "journal: index bytes per event, 1,000,000 events",
        "recovery",
        "index_bytes_per_event",
        {"events": 1_000_000},
        32,
        False,
    ),
    (
        "runtime: durable commands/s over 10,000 actors, 1,000 callers",
        "many-actors",
        "commands_per_s",
        {"callers": 1_000},
        80_000,
        True,
    ),
    (
        "runtime: durable commands/s over 10,000 actors, 10,000 callers",
        "many-actors",
        "commands_per_s",
        {"callers": 10_000},
        80_000,
        True,
    ),
    (
        "runtime: durable commands/s, one hot actor, 1,000 in flight",
        "hot-actor",
        "commands_per_s",
        {"in_flight": 1_000},
        120_000,
        True,
    ),
    ("runtime: new-actor activations/s", "activation", "activations_per_s", {}, 100_000, True),
    ("runtime: bytes per idle live actor", "activation", "bytes_per_idle_actor", {}, 500, False),
    (
        "runtime: replay events/s, one long stream",
        "recovery",
        "replay_events_per_s",
        {"streams": "one long", "snapshots": "no"},
        400_000,
        True,
    ),
    (
        "runtime: replay events/s, many short streams",
        "recovery",
        "replay_events_per_s",
        {"streams": "many short", "snapshots": "no"},
        400_000,
        True,
    ),
)


def target_checks(scenarios: Sequence[ScenarioResult]) -> list[TargetCheck]:
    """The project's stated targets, for the figures this run measured durably."""
    checks = []
    for label, scenario, name, parameters, target, higher in _TARGETS:
        figure = find(scenarios, scenario, name, **parameters)
        if figure is None or not figure.durable:
            continue
        checks.append(TargetCheck(label, figure.key, figure.summary.median, target, higher))
    return checks
