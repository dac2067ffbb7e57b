"""A user's workload must cause one event per command: checked before anything runs.

A command that causes no event is answered without waiting for the journal, so its caller
never lets the others run and the measured windows never open: the run would spin for ever.
A command that causes several would be timed as a one-event command. Commands past those
checked are checked as the run goes: a caller that never waits fails the run, and so do
windows whose events and commands differ.
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from benchmarks.harness import (
    TINY,
    BenchContext,
    Progress,
    Workload,
    WorkloadError,
    add_arguments,
    load_workload,
    run,
)
from benchmarks.harness._drive import (
    RAMP_OPERATIONS_MAX,
    CallersStarved,
    NotOneEventEach,
    check_events_per_command,
    run_windows,
)
from benchmarks.harness._runner import _run_one
from benchmarks.harness._windows import Windows
from runtime import Aggregate

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


# -- commands past the ones checked before the run ------------------------------------------


@dataclass(frozen=True)
class Deposit:
    index: int


@dataclass(frozen=True)
class Deposited:
    index: int


def _events_from(switch_at: int, after: Callable[[int], list[Deposited]]) -> Workload:
    """A workload whose commands cause one event each until index ``switch_at``, then what
    ``after`` gives: past the commands ``load_workload`` checks, as a factory may do."""

    def decide(state: int, command: Deposit) -> list[Deposited]:
        return [Deposited(command.index)] if command.index < switch_at else after(command.index)

    aggregate = Aggregate("late", 0, decide, lambda state, event: state + 1,
                          events={"Deposited": Deposited})  # fmt: skip
    return Workload(aggregate, lambda entity_id, index: Deposit(index), "late")


@pytest.mark.parametrize(
    ("after", "said"),
    [
        (
            lambda index: [],
            "CallersStarved: caller 0 completed 10000 operations after its first while 9 of the "
            "10 callers had not completed their first",
        ),
        (
            lambda index: [Deposited(index), Deposited(index)],
            "NotOneEventEach: the measured windows completed ",
        ),
    ],
    ids=["no event", "two events"],
)
def test_commands_that_stop_causing_one_event_during_the_run_fail_the_scenario(
    tmp_path: Path, after: Callable[[int], list[Deposited]], said: str
) -> None:
    # From the fifth command on, past the commands checked before the run. Without events,
    # the first caller answered goes on without ever waiting, and the others never run: the
    # run used to spin for ever. With two events each, the figures would count commands as
    # one-event commands.
    context = BenchContext(TINY, tmp_path, _events_from(5, after), Progress(enabled=False))
    result = _run_one("hot-actor", context)
    assert result.skipped is not None
    assert result.skipped.startswith(f"failed: {said}")
    assert not result.figures


def test_a_caller_whose_operations_never_wait_fails_the_run_instead_of_spinning() -> None:
    async def never_waits(caller: int) -> None:
        return None

    windows = Windows(3, 1, 1_000_000)
    with pytest.raises(BaseExceptionGroup) as raised:
        anyio.run(run_windows, windows, never_waits)
    # The others, let run by the first one's failure, go on the same way.
    error, *others = raised.value.exceptions
    assert all(isinstance(other, CallersStarved) for other in [error, *others])
    assert str(error).startswith(
        f"caller 0 completed {RAMP_OPERATIONS_MAX} operations after its first while 2 of the 3 "
        f"callers had not completed their first: its operations complete without waiting"
    )


def _windows_with_events(
    callers: int, commands: int, events: int, appends: int | None = None
) -> Windows:
    """Windows that completed ``commands`` while the journal took ``events`` events in
    ``appends`` appends (one event each, unless given)."""
    windows = Windows(callers, 1, 1_000_000)
    windows.probes = [
        SimpleNamespace(appended_events=7, appends=5),
        SimpleNamespace(
            appended_events=7 + events, appends=5 + (events if appends is None else appends)
        ),
    ]
    windows.done_ns.extend(range(commands))
    return windows


@pytest.mark.parametrize("difference", [-20, -1, 0, 1, 20])
def test_commands_in_flight_at_the_windows_edges_are_allowed_for(difference: int) -> None:
    # Up to one command per caller each way: appended before the first window and answered in
    # it, or appended in the last and answered after it.
    check_events_per_command(_windows_with_events(10, 1_000, 1_000 + difference))


@pytest.mark.parametrize(("events", "said"), [(979, "no event"), (1_021, "several events")])
def test_more_than_twice_the_callers_apart_is_refused(events: int, said: str) -> None:
    with pytest.raises(
        NotOneEventEach,
        match=f"completed 1000 commands and the journal took "
        f"{events} events in them: the workload's later commands cause {said}",
    ):
        check_events_per_command(_windows_with_events(10, 1_000, events))


@pytest.mark.parametrize("commands", [150, 20, 1])
def test_commands_of_several_events_are_refused_however_few_the_windows_measured(
    commands: int,
) -> None:
    # Each command one append of two events: with short windows and many callers, fewer
    # commands are measured than twice the callers, and the difference passed for commands
    # in flight at the edges. The journal's appends count the commands exactly.
    with pytest.raises(NotOneEventEach, match="cause several events"):
        check_events_per_command(_windows_with_events(100, commands, 2 * commands, commands))
