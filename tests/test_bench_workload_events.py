"""A user's workload must cause one event per command: checked before anything runs.

A command that causes no event is answered without waiting for the journal, so its caller
never lets the others run and the measured windows never open: the run would spin for ever.
A command that causes several would be timed as a one-event command.
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.harness import WorkloadError, add_arguments, load_workload, run

COUNTERS = textwrap.dedent(
    """
    from dataclasses import dataclass

    from runtime import Aggregate, CommandRejected


    @dataclass(frozen=True)
    class Add:
        amount: int


    @dataclass(frozen=True)
    class Added:
        amount: int


    @dataclass(frozen=True)
    class Noted:
        amount: int


    def evolve(state, event):
        return state + 1


    EVENTS = {"Added": Added, "Noted": Noted}
    # Only the first command of an entity causes an event; the others change nothing.
    ONCE = Aggregate("once", 0, lambda state, command: [Added(1)] if state == 0 else [],
                     evolve, events=EVENTS)
    # From the fifth command on, each command causes two events.
    TWICE = Aggregate(
        "twice", 0,
        lambda state, command: [Added(1)] if state < 4 else [Added(1), Noted(1)],
        evolve, events=EVENTS,
    )


    def refuse_the_third(state, command):
        if command.amount == 2:
            raise CommandRejected("full")
        return [Added(1)] if command.amount < 2 else []


    # The third command is refused, before the fourth, which causes no event, is reached.
    REFUSED = Aggregate("refused", 0, refuse_the_third, evolve, events=EVENTS)


    def commands(entity_id, index):
        return Add(index)
    """
)


@pytest.fixture
def counters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "event_counters.py").write_text(COUNTERS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "event_counters", raising=False)
    yield "event_counters"
    sys.modules.pop("event_counters", None)


def test_a_command_that_causes_no_event_is_refused_before_the_run(counters: str) -> None:
    with pytest.raises(
        WorkloadError,
        match=r"command 1 of entity 'sample' \(Add\(amount=1\)\) causes no event; the "
        r"benchmarks time one-event commands",
    ):
        load_workload(f"{counters}:ONCE", f"{counters}:commands")


def test_a_command_that_causes_several_events_is_refused_before_the_run(counters: str) -> None:
    with pytest.raises(WorkloadError, match=r"command 4 of entity 'sample' .* causes 2 events"):
        load_workload(f"{counters}:TWICE", f"{counters}:commands")


def test_a_refused_command_ends_the_check_and_is_left_to_the_run(counters: str) -> None:
    # The run reports a refusal as the scenario's failure, in the refusal's own words.
    workload = load_workload(f"{counters}:REFUSED", f"{counters}:commands")
    assert workload.name == f"{counters}:REFUSED with {counters}:commands"


def test_the_command_line_says_so_as_a_usage_error_and_runs_nothing(
    counters: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="eventfold bench")
    add_arguments(parser)
    arguments = parser.parse_args([
        "--suite", "tiny", "--progress", "never", "--scenario", "hot-actor",
        "--aggregate", f"{counters}:TWICE", "--commands", f"{counters}:commands",
    ])  # fmt: skip
    out = io.StringIO()
    assert run(arguments, out) == 2
    assert out.getvalue() == "", "no scenario ran"
    assert "causes 2 events" in capsys.readouterr().err


def test_an_async_command_factory_is_refused_before_it_is_called(
    counters: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "async_factory.py").write_text(
        "from event_counters import Add\n\n\n"
        "async def commands(entity_id, index):\n    return Add(index)\n",
        encoding="utf-8",
    )
    monkeypatch.delitem(sys.modules, "async_factory", raising=False)
    with pytest.raises(
        WorkloadError,
        match=r"--commands 'async_factory:commands' is an async function; .* make it a plain "
        r"def commands\(entity_id: str, index: int\) -> command",
    ):
        load_workload(f"{counters}:ONCE", "async_factory:commands")
    sys.modules.pop("async_factory", None)
