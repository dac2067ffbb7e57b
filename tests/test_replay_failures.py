"""A stored event that user code cannot fold: the error says where, and activation logs it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from journals import MemoryJournal, NewEvent
from runtime import Aggregate, EventType, LifecycleEvent, RestartPolicy, Runtime, UnknownEventType
from runtime.testing import ManualClock


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class Added:
    amount: int
    unit: str


def upcast(data: dict[str, Any]) -> Any:
    """Version 1 had no unit; a version-1 record without "n" is a shape it never expected."""
    return {"amount": data["n"], "unit": "g"}


def decode_refusing_kg(data: dict[str, Any]) -> Added:
    if data["unit"] == "kg":
        raise ValueError("kilograms are not supported")
    return Added(**data)


def tally(aggregate_events: dict[str, type[Any] | EventType[Any]]) -> Aggregate[int, Add, Added]:
    return Aggregate(
        "tally",
        0,
        lambda total, command: [Added(command.amount, "g")],
        lambda total, event: total + event.amount,
        events=aggregate_events,
    )


# Each stores two good events, then one that its aggregate cannot fold, as version 3.
FAILURES: dict[str, tuple[Aggregate[int, Add, Added], NewEvent, type[Exception]]] = {
    "an upcaster raises": (
        tally({"Added": EventType(Added, version=2, upcasters={1: upcast})}),
        NewEvent("tally.Added/1", {"m": 3}),
        KeyError,
    ),
    "an upcaster answers no dict": (
        tally({"Added": EventType(Added, version=2, upcasters={1: lambda data: [data]})}),
        NewEvent("tally.Added/1", {"n": 3}),
        TypeError,
    ),
    "decode raises": (
        tally({"Added": EventType(Added, version=2, decode=decode_refusing_kg)}),
        NewEvent("tally.Added/2", {"amount": 3, "unit": "kg"}),
        ValueError,
    ),
}


async def store_history(journal: MemoryJournal, bad: NewEvent) -> None:
    good = [NewEvent("tally.Added/2", {"amount": n, "unit": "g"}) for n in (1, 2)]
    await journal.append("tally-1", [*good, bad], expected_version=0)


def replay_note(error: BaseException) -> str:
    notes: list[str] = getattr(error, "__notes__", [])
    assert len(notes) == 1, notes
    return notes[0]


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.anyio
async def test_a_replay_failure_names_the_stream_and_the_stored_event(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    aggregate, bad, kind = FAILURES[failure]
    notices: list[LifecycleEvent] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, on_lifecycle=notices.append, clock=ManualClock(autojump=True)) as rt,
    ):
        await store_history(journal, bad)
        with (
            caplog.at_level(logging.ERROR, logger="eventfold.runtime"),
            pytest.raises(kind) as caught,
        ):
            await rt.ask(aggregate, "1", Add(1))
        note = replay_note(caught.value)
        assert "stream 'tally-1' (aggregate 'tally')" in note
        assert f"its event 3, stored as {bad.type!r}," in note
        assert "fix that code" in note
        # Logged once, at error level, with the note in its traceback.
        [record] = [r for r in caplog.records if r.name == "eventfold.runtime"]
        assert record.levelno == logging.ERROR
        assert record.getMessage().startswith("activating 'tally-1' failed on its event 3;")
        assert record.exc_info is not None
        assert record.exc_info[1] is caught.value
        # The crash is reported at the version reached before the event that failed.
        crashed = [n for n in notices if n.kind == "crashed"]
        assert [(n.stream_id, n.version, n.error) for n in crashed] == [
            ("tally-1", 2, caught.value)
        ]
        assert rt.statistics().crashes == 1


@pytest.mark.anyio
async def test_crashes_while_activating_are_logged_with_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The same code fails every activation of every entity with such an event: the first
    # crash is logged with its traceback, each later one in a line at debug level, and the
    # stop that ends them does not repeat the traceback.
    aggregate, bad, kind = FAILURES["an upcaster raises"]
    policy = RestartPolicy(max_restarts=2, backoff_initial_s=0)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, restart_policy=policy, clock=ManualClock(autojump=True)) as rt,
    ):
        await store_history(journal, bad)
        await journal.append("tally-2", [bad], expected_version=0)
        with caplog.at_level(logging.DEBUG, logger="eventfold.runtime"):
            for entity in ("1", "2", "1", "1"):
                with pytest.raises(kind) as caught:
                    await rt.ask(aggregate, entity, Add(1))
                replay_note(caught.value)  # one note each: every crash is a fresh error
        assert rt.statistics().crashes == 4
    records = [r for r in caplog.records if r.name == "eventfold.runtime"]
    assert [(r.levelno, r.getMessage()[:20], r.exc_info is not None) for r in records] == [
        (logging.ERROR, "activating 'tally-1'", True),
        (logging.DEBUG, "activating 'tally-2'", False),
        (logging.DEBUG, "activating 'tally-1'", False),
        (logging.DEBUG, "activating 'tally-1'", False),
        (logging.ERROR, "'tally-1' stopped: i", False),
    ]
    assert "Later activations of 'tally' that fail with KeyError" in records[0].getMessage()


@pytest.mark.parametrize(
    "rebuild",
    [
        lambda rt, aggregate: rt.state_at(aggregate, "1", version=3),
        lambda rt, aggregate: rt.state_at(aggregate, "1", at=datetime.now(UTC) + timedelta(1)),
    ],
    ids=["version", "moment"],
)
@pytest.mark.anyio
async def test_a_past_state_that_cannot_be_rebuilt_says_where(
    rebuild: Callable[[Runtime, Aggregate[int, Add, Added]], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    aggregate, bad, kind = FAILURES["decode raises"]
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await store_history(journal, bad)
        assert await rt.state_at(aggregate, "1", version=2) == 3
        with pytest.raises(kind) as caught:
            await rebuild(rt, aggregate)
        assert "stream 'tally-1'" in replay_note(caught.value)
        assert "its event 3, stored as 'tally.Added/2'," in replay_note(caught.value)
        # Not an activation: the caller has the error, nothing crashed and nothing is logged.
        assert rt.statistics().crashes == 0
    assert not [r for r in caplog.records if r.name == "eventfold.runtime"]


@pytest.mark.anyio
async def test_the_failed_event_is_found_in_a_later_chunk() -> None:
    aggregate, bad, kind = FAILURES["an upcaster raises"]
    many = [NewEvent("tally.Added/1", {"n": n}) for n in range(2500)]
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await journal.append("tally-1", [*many, bad, *many[:3]], expected_version=0)
        with pytest.raises(kind) as caught:
            await rt.ask(aggregate, "1", Add(1))
        assert "its event 2501, stored as 'tally.Added/1'," in replay_note(caught.value)


@pytest.mark.anyio
async def test_an_event_of_a_later_version_of_the_code_says_so() -> None:
    # Written by a later version of the application (version 3 of "Added"), then read by
    # this one after a rollback: nothing raised in user code, and no upcaster can help.
    aggregate = tally({"Added": EventType(Added, version=2, upcasters={1: upcast})})
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await store_history(journal, NewEvent("tally.Added/3", {"amount": 3, "unit": "g"}))
        with pytest.raises(UnknownEventType, match="written by a later version") as caught:
            await rt.ask(aggregate, "1", Add(1))
    assert replay_note(caught.value) == (
        "while replaying stream 'tally-1' (aggregate 'tally'): its event 3, stored as "
        "'tally.Added/3', could not be folded: the aggregate registers no way to read that "
        "type (see above). The stored events are unchanged: once the code reads that type, "
        "the entity can be activated again"
    )


@dataclass(frozen=True)
class Counted:
    """Once ``Counted(amount, unit)``; "unit" was removed without a new version."""

    amount: int


@pytest.mark.anyio
async def test_a_class_changed_without_a_new_version_says_how_to_keep_its_events_readable() -> None:
    aggregate: Aggregate[int, Add, Counted] = Aggregate(
        "tally",
        0,
        lambda total, command: [Counted(command.amount)],
        lambda total, event: total + event.amount,
        events={"Counted": Counted},
    )
    rebuilds: list[Callable[[Runtime], Any]] = [
        lambda rt: rt.ask(aggregate, "1", Add(1)),
        lambda rt: rt.state_at(aggregate, "1", version=1),
        lambda rt: rt.state_at(aggregate, "1", at=datetime.now(UTC) + timedelta(1)),
    ]
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        stored = NewEvent("tally.Counted/1", {"amount": 3, "unit": "g"})
        await journal.append("tally-1", [stored], expected_version=0)
        for rebuild in rebuilds:
            with pytest.raises(TypeError, match="unexpected keyword argument 'unit'") as caught:
                await rebuild(rt)
            where, what = caught.value.__notes__
            assert "its event 1, stored as 'tally.Counted/1', could not be folded" in where
            assert what == (
                "Counted(...) takes no 'unit', and the event stored as 'tally.Counted/1' holds "
                "the keys ['amount', 'unit']: the class has changed since such events were "
                "stored, without a new version. Keep the stored form readable: register its "
                "new form as version 2, with an upcaster that turns the data of version 1 into "
                "it: EventType(Counted, version=2, upcasters={1: ...})"
            )
