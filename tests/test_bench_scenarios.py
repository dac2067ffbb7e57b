"""A tiny run of each scenario: the structure of its output and that every figure is positive.

Speed is never asserted here; the figures only have to exist, be finite and be positive.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import DEFAULT_WORKLOAD, SCENARIOS, TINY, BenchContext, Progress
from benchmarks.harness._peer import INSTALL_HINT
from benchmarks.harness._peer import run as run_peer
from benchmarks.harness._ratios import target_checks
from benchmarks.harness._results import ScenarioResult
from benchmarks.harness._windows import Round, Windows
from benchmarks.harness._writing import write_interleaved
from journals import FileJournal, NewEvent

EXPECTED_FIGURES = {
    "limits": {
        "fdatasync_latency_ms",
        "fdatasync_per_s",
        "fdatasync_pre_zeroed_per_s",
        "orjson_encode_per_s",
        "orjson_decode_per_s",
    },
    "journal": {
        "events_per_s",
        "events_per_fsync",
        "latency_ms_p50",
        "latency_ms_p99",
        "latency_ms_p99.9",
        "loop_cpu_us",
        "index_bytes_per_event",
    },
    "bare-loop": {
        "commands_per_s",
        "events_per_fsync",
        "latency_ms_p50",
        "latency_ms_p99",
        "latency_ms_p99.9",
        "loop_cpu_us",
    },
    "many-actors": {
        "commands_per_s",
        "events_per_fsync",
        "latency_ms_p50",
        "latency_ms_p99",
        "latency_ms_p99.9",
        "loop_cpu_us",
    },
    "hot-actor": {
        "commands_per_s",
        "events_per_fsync",
        "latency_ms_p50",
        "latency_ms_p99",
        "latency_ms_p99.9",
        "loop_cpu_us",
    },
    "activation": {"activations_per_s", "bytes_per_idle_actor"},
    "recovery": {"reopen_s", "index_bytes_per_event", "replay_events_per_s", "recovery_ms"},
    "peer": {
        "commands_per_s",
        "latency_ms_p50",
        "latency_ms_p99",
        "latency_ms_p99.9",
        "replay_events_per_s",
    },
}


def tiny_context(
    directory: Path, *, durable: bool = True, backend: str = "asyncio"
) -> BenchContext:
    return BenchContext(
        sizes=TINY,
        directory=directory,
        workload=DEFAULT_WORKLOAD,
        progress=Progress(enabled=False),
        durable=durable,
        backend=backend,
    )


def check_structure(result: ScenarioResult, name: str, wall_s: float) -> None:
    """``wall_s``: the time the test measured around the run, which the result's own can't
    exceed."""
    assert result.skipped is None, result.skipped
    assert result.name == name
    assert {figure.name for figure in result.figures} == EXPECTED_FIGURES[name]
    assert len({figure.key for figure in result.figures}) == len(result.figures)
    for figure in result.figures:
        summary = figure.summary
        assert all(math.isfinite(value) and value > 0 for value in summary.samples), figure.key
        assert summary.minimum <= summary.median <= summary.maximum, figure.key
        assert figure.scenario == name
    # Bookkeeping, not speed: the scenario's own clock must lie within the test's clock.
    assert 0 < result.elapsed_s <= wall_s


def test_every_scenario_is_expected() -> None:
    assert set(SCENARIOS) == set(EXPECTED_FIGURES)


@pytest.fixture
def stalled_windows(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per run of windows: whether a stall of the machine cost it a sample.

    A window in which nothing completed is merged into the next (one round fewer), and a
    round in which no fsync or no CPU reading fell gives no such sample (``_windows``): on a
    loaded machine a tiny run's 20 ms windows can meet either.
    """
    stalled: list[bool] = []
    rounds_of = Windows.rounds

    def rounds(self: Windows, batching: Any = None) -> list[Round]:
        answered = rounds_of(self, batching)
        stalled.append(
            len(answered) < self.count
            or (batching is not None and any(r.events_per_fsync is None for r in answered))
            or (self.cpu_clock is not None and any(r.loop_cpu_ns_per_op is None for r in answered))
        )
        return answered

    monkeypatch.setattr(Windows, "rounds", rounds)
    return stalled


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_tiny_run_of_each_scenario(
    name: str, tmp_path: Path, stalled_windows: list[bool]
) -> None:
    _, run = SCENARIOS[name]
    began = time.perf_counter()
    result = run(tiny_context(tmp_path))
    check_structure(result, name, time.perf_counter() - began)
    repetitions = {len(figure.summary.samples) for figure in result.figures}
    if name == "limits":
        assert max(repetitions) == TINY.fsync_chunks
    elif name not in ("journal",):
        if any(stalled_windows):  # Fewer samples only where a window lost one, never more.
            assert repetitions <= set(range(1, TINY.repetitions + 1))
        else:
            assert repetitions == {TINY.repetitions}
    assert list(tmp_path.iterdir()) == [], "a scenario must remove its journals"
    if name == "peer":
        assert result.settings["eventsourcing"], "the peer's version is part of its result"


def test_sweeps_cover_every_concurrency(tmp_path: Path) -> None:
    _, run = SCENARIOS["many-actors"]
    result = run(tiny_context(tmp_path))
    callers = [figure.parameters["callers"] for figure in result.figures
               if figure.name == "commands_per_s"]  # fmt: skip
    assert callers == list(TINY.callers)


@pytest.mark.parametrize("scenario", ["hot-actor", "activation"])
def test_not_durable_figures_are_labelled(tmp_path: Path, scenario: str) -> None:
    _, run = SCENARIOS[scenario]
    result = run(tiny_context(tmp_path, durable=False))
    assert result.figures
    assert not any(figure.durable for figure in result.figures)
    assert target_checks([result]) == [], "no target is checked without fsync"
    if scenario != "hot-actor":
        return
    assert any("NOT DURABLE" in note for note in result.notes)
    names = {figure.name for figure in result.figures}
    assert "events_per_fsync" not in names, "without fsync there is no events-per-fsync figure"


def test_the_peer_is_skipped_with_the_install_command_when_missing(tmp_path: Path) -> None:
    result = run_peer(tiny_context(tmp_path), importable=lambda: False)
    assert result.figures == ()
    assert result.skipped == INSTALL_HINT
    assert "pip install eventfold[peers]" in INSTALL_HINT


def test_recovery_reports_the_journal_it_reopened(tmp_path: Path) -> None:
    _, run = SCENARIOS["recovery"]
    result = run(tiny_context(tmp_path))
    reopen = result.figure("reopen_s", events=result.figures[0].parameters["events"])
    assert reopen.parameters["events"] == TINY.reopen_events
    snapshots = {figure.parameters["snapshots"] for figure in result.figures
                 if figure.name == "recovery_ms"}  # fmt: skip
    assert snapshots == {"yes", "no"}
    streams = [figure.parameters.get("streams") for figure in result.figures
               if figure.name == "replay_events_per_s"]  # fmt: skip
    assert streams == [
        "one long",
        "many short",
        f"interleaved by {TINY.interleaved_group}",
        f"interleaved by {TINY.short_streams}",
    ]


@pytest.mark.anyio
async def test_interleaved_streams_are_written_taking_turns(tmp_path: Path) -> None:
    """Each entity's events lie one group apart in the log, as many as the group's entities."""
    workload = DEFAULT_WORKLOAD
    events = [NewEvent("Deposited", {"amount": version}) for version in range(3)]
    entity_ids = [f"e-{index}" for index in range(5)]
    async with FileJournal(tmp_path / "journal") as journal:
        written = await write_interleaved(journal, workload.aggregate, entity_ids, events, 2)
        positions = {
            entity_id: [event.position async for event in journal.read(
                workload.aggregate.stream_id(entity_id))]
            for entity_id in entity_ids
        }  # fmt: skip
    assert written == 15
    assert positions == {
        "e-0": [1, 3, 5],
        "e-1": [2, 4, 6],
        "e-2": [7, 9, 11],
        "e-3": [8, 10, 12],
        "e-4": [13, 14, 15],
    }


@pytest.mark.parametrize("name", ["many-actors", "recovery"])
def test_scenarios_run_on_trio_too(name: str, tmp_path: Path) -> None:
    _, run = SCENARIOS[name]
    began = time.perf_counter()
    result = run(tiny_context(tmp_path, backend="trio"))
    check_structure(result, name, time.perf_counter() - began)
