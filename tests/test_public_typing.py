"""Uses of the public API that a user's type checker must accept (CI runs mypy --strict over
tests/), run here too so that they also hold at run time; and uses it must refuse, checked by
running the type checker on a snippet."""

from __future__ import annotations

import re
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


# Uses the type checker must refuse, each marked with what its error says: the views that let
# wider result types pass must not let unsound calls pass with them.
REFUSED = """
from dataclasses import dataclass
from runtime import Aggregate, CommandResult, Runtime
from runtime.testing import AggregateTest

@dataclass(frozen=True)
class Change:
    amount: int

@dataclass(frozen=True)
class Added(Change): ...

@dataclass(frozen=True)
class Removed(Change): ...

@dataclass(frozen=True)
class Add:
    amount: int

def decide(state: int, command: Add) -> list[Added | Removed]:
    return [Added(command.amount)]

def evolve(state: int, event: Added | Removed) -> int:
    return state + event.amount

counter = Aggregate("counter", 0, decide, evolve, events={"Added": Added, "Removed": Removed})

class Lookalike:  # Not an Aggregate: it has no stream prefix.
    initial = 0
    def decide(self, state: int, command: Add) -> list[Added]:
        return [Added(command.amount)]

async def refused(runtime: Runtime) -> None:
    # A command decide does not take (the message differs between mypy versions):
    await runtime.ask(counter, "c", Removed(1))  # refused: of "ask" of "Runtime"
    await runtime.ask(counter, "c", "Add(1)")  # refused: of "ask" of "Runtime"
    await runtime.tell(counter, "c", Removed(1))  # refused: of "tell" of "Runtime"
    runtime.tell_nowait(counter, "c", Removed(1))  # refused: of "tell_nowait" of "Runtime"
    # A result narrower than, or unrelated to, the aggregate's events or states:
    a: CommandResult[Added] = await runtime.ask(counter, "c", Add(1))  # refused: [Add, Added]
    b: CommandResult[str] = await runtime.ask(counter, "c", Add(1))  # refused: [Add, str]
    c: bool = await runtime.state(counter, "c")  # refused: "StatesOf[bool]"
    d: str = await runtime.state_at(counter, "c", version=1)  # refused: "StatesOf[str]"
    # An object that is not an aggregate:
    await runtime.ask(Lookalike(), "c", Add(1))  # refused: type "Lookalike"
    await runtime.state(Lookalike(), "c")  # refused: type "Lookalike"
    # What reads or takes the aggregate's events keeps their exact type (given, evolve):
    e: AggregateTest[int, Add, Change] = AggregateTest(counter)  # refused: "AggregateTest"
    f: Aggregate[int, Add, Change] = Aggregate(
        "f", 0, decide, evolve, events={}  # refused: Argument 4 to "Aggregate"
    )
"""


def test_unsound_uses_are_still_refused(tmp_path: Path) -> None:
    from mypy import api  # imported here: only this test needs the type checker

    snippet = tmp_path / "snippet.py"
    snippet.write_text(REFUSED, encoding="utf-8")
    config = tmp_path / "mypy.ini"
    root = Path(__file__).resolve().parent.parent
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {root}\n", encoding="utf-8")
    report, _, _ = api.run(
        [f"--config-file={config}", f"--cache-dir={tmp_path / 'cache'}", str(snippet)]
    )
    errors: dict[int, list[str]] = {}
    for number, message in re.findall(r"^.*snippet\.py:(\d+): error: (.*)$", report, re.MULTILINE):
        errors.setdefault(int(number), []).append(message)
    expected = {
        number: mark.group(1)
        for number, line in enumerate(REFUSED.splitlines(), start=1)
        if (mark := re.search(r"# refused: (.*)$", line))
    }
    assert set(errors) == set(expected), report
    for number, fragment in expected.items():
        assert any(fragment in message for message in errors[number]), report
