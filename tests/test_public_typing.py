"""Uses of the public API that a user's type checker must accept (CI runs mypy --strict over
tests/), run here too so that they also hold at run time."""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import pytest

from journals import FileJournal, MemoryJournal, NewEvent, export_checkpoint, verify_journal
from runtime import Aggregate, CommandResult, Runtime


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class Change:
    """A base class of the counter's events, as applications often have."""

    amount: int


@dataclass(frozen=True)
class Added(Change):
    pass


@dataclass(frozen=True)
class Removed(Change):
    pass  # The same constructor as Added's: a type checker must not merge the two.


def decide(state: int, command: Add) -> list[Added | Removed]:
    return [Added(command.amount)]


def evolve(state: int, event: Added | Removed) -> int:
    return state + event.amount if isinstance(event, Added) else state - event.amount


counter = Aggregate("counter", 0, decide, evolve, events={"Added": Added, "Removed": Removed})


def describe(result: CommandResult[object]) -> str:
    """Takes the result of any aggregate's command: CommandResult is read-only, covariant."""
    return f"{result.version}: {result.events}"


@pytest.mark.anyio
async def test_results_and_states_pass_where_a_wider_type_is_expected() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        result = await runtime.ask(counter, "c", Add(2))
        assert describe(result) == "1: (Added(amount=2),)"
        # The expected type (object) takes part in inferring the state's type.
        shown: object = await runtime.state(counter, "c")
        past: object = await runtime.state_at(counter, "c", version=1)
        assert shown == past == 2


def amounts(result: CommandResult[Change]) -> list[int]:
    """Takes the result of a command of any aggregate whose events are changes."""
    return [event.amount for event in result.events]


@pytest.mark.anyio
async def test_answers_pass_where_a_wider_event_type_is_expected() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        # Each expected type takes part in inferring the events' type, before the aggregate
        # is checked against it: ask must take an aggregate of narrower events.
        anything: CommandResult[object] = await runtime.ask(counter, "c", Add(2))
        assert anything.events == (Added(2),)
        assert amounts(await runtime.ask(counter, "c", Add(3))) == [3]
        answers: list[CommandResult[Change]] = [
            await runtime.ask(counter, "c", Add(amount)) for amount in (4, 5)
        ]
        assert [answer.version for answer in answers] == [3, 4]


@pytest.mark.anyio
async def test_reads_are_async_generators_and_metadata_may_be_none(tmp_path: Path) -> None:
    key = bytearray(b"a key of bytes")  # Any bytes-like key, as documented.
    async with FileJournal(tmp_path / "journal", key=key) as journal:
        await journal.append("s", [NewEvent("T", {"n": 1}, None)], expected_version=0)
        async with aclosing(journal.read("s")) as events:
            assert [event.metadata async for event in events] == [{}]
        async with aclosing(journal.read_all()) as everything:
            assert [event.data async for event in everything] == [{"n": 1}]
    assert verify_journal(tmp_path / "journal", key=memoryview(key)).intact
    assert export_checkpoint(tmp_path / "journal", key=key).position == 1
