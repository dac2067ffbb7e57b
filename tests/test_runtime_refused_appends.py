"""An append the journal refuses, or that its caller takes back, leaves no trace in the state.

Every way an append can be refused or withdrawn (and an evolve interrupted by a
BaseException), for an aggregate whose ``evolve`` returns new immutable states and one whose
``evolve`` changes its state in place: after it, the actor's state is the fold of what the
journal holds, and the next command is decided against that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import pytest

from journals import EventEncodingError, MemoryJournal, NewEvent, encode_data
from runtime import Aggregate, Runtime

from .test_runtime_manual_journal import ManualJournal, _Outcome


@dataclass(frozen=True)
class Add:
    item: str
    price: Any = 0  # a Decimal cannot be stored as JSON: the journal refuses it


@dataclass(frozen=True)
class Added:
    item: str
    price: Any = 0


def decide(state: Any, command: Add) -> list[Added]:
    return [Added(command.item, command.price)]


@dataclass(frozen=True)
class FrozenCart:
    items: tuple[str, ...] = ()


def evolve_frozen(state: FrozenCart, event: Added) -> FrozenCart:
    return FrozenCart((*state.items, event.item))


@dataclass
class Cart:
    items: list[str] = field(default_factory=list)


def evolve_in_place(state: Cart | None, event: Added) -> Cart:
    if state is None:  # The entity's own object, made by its first event; then changed.
        state = Cart()
    state.items.append(event.item)
    return state


IMMUTABLE = Aggregate("cart", FrozenCart(), decide, evolve_frozen, events={"Added": Added})
IN_PLACE = Aggregate("cart", None, decide, evolve_in_place, events={"Added": Added})


@pytest.fixture(params=[IMMUTABLE, IN_PLACE], ids=["immutable", "in_place"])
def cart(request: pytest.FixtureRequest) -> Aggregate[Any, Add, Added]:
    aggregate: Aggregate[Any, Add, Added] = request.param
    return aggregate


@pytest.fixture(params=[False, True], ids=["append", "start_append"])
def starts(request: pytest.FixtureRequest) -> bool:
    """Whether the journal places appends through ``start_append`` (no coroutine each)."""
    return bool(request.param)


class EncodingManualJournal(ManualJournal):
    """A ManualJournal that refuses what JSON cannot hold as every journal does."""

    def _place(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> _Outcome:
        for event in events:
            encode_data(event.data, f"data of {event.type!r}")
        return super()._place(stream_id, events, expected_version)


async def _items(runtime: Runtime, cart: Aggregate[Any, Add, Added]) -> list[str]:
    return list((await runtime.state(cart, "c")).items)


async def _ask_committed(
    runtime: Runtime, journal: ManualJournal, cart: Aggregate[Any, Add, Added], item: str
) -> None:
    """Ask to add ``item`` and commit its append once the journal has it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.ask, cart, "c", Add(item))
        await anyio.wait_all_tasks_blocked()
        journal.commit()


def _stored(journal: ManualJournal) -> list[str]:
    return [event.data["item"] for event in journal.streams.get("cart-c", [])]


@pytest.mark.anyio
async def test_events_the_journal_refuses_are_not_in_the_state_that_decides_next(
    cart: Aggregate[Any, Add, Added],
) -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(cart, "c", Add("apple"))
        with pytest.raises(EventEncodingError, match="cannot be encoded as JSON"):
            await runtime.ask(cart, "c", Add("pear", Decimal("1.5")))
        assert await _items(runtime, cart) == ["apple"]
        assert (await runtime.ask(cart, "c", Add("plum"))).version == 2
        assert await _items(runtime, cart) == ["apple", "plum"]
        statistics = runtime.statistics()
        assert (statistics.append_failures, statistics.crashes) == (1, 0)
        stored = [event.data["item"] async for event in journal.read("cart-c")]
    assert stored == ["apple", "plum"]


@pytest.mark.anyio
async def test_a_refusal_behind_appends_in_flight_keeps_them(
    cart: Aggregate[Any, Add, Added], starts: bool
) -> None:
    journal = EncodingManualJournal(start_appends=starts)
    answers: dict[str, Any] = {}

    async def ask(name: str, command: Add) -> None:
        try:
            answers[name] = await runtime.ask(cart, "c", command)
        except Exception as error:
            answers[name] = error

    async with Runtime(journal) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(ask, "apple", Add("apple"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(ask, "pear", Add("pear", Decimal("1.5")))
        await anyio.wait_all_tasks_blocked()
        assert isinstance(answers.get("pear"), EventEncodingError)
        assert journal.pending == 1  # the apple, decided before the refusal, is in flight
        tg.start_soon(ask, "plum", Add("plum"))
        await anyio.wait_all_tasks_blocked()
        assert "plum" not in answers  # waits until the apple settles and the actor is rebuilt
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        assert (answers["apple"].version, answers["plum"].version) == (1, 2)
        assert await _items(runtime, cart) == ["apple", "plum"]
    assert _stored(journal) == ["apple", "plum"]


@pytest.mark.anyio
async def test_an_append_refused_when_its_turn_for_room_comes_leaves_no_trace(
    cart: Aggregate[Any, Add, Added],
) -> None:
    journal = EncodingManualJournal(start_appends=True)
    errors: list[BaseException] = []

    async def ask_pear() -> None:
        try:
            await runtime.ask(cart, "c", Add("pear"))
        except EventEncodingError as error:
            errors.append(error)

    async with Runtime(journal) as runtime:
        await _ask_committed(runtime, journal, cart, "apple")
        journal.full = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask_pear)
            await anyio.wait_all_tasks_blocked()
            (queued,) = journal.queued
            # Its turn comes and the journal refuses it (as one of more than 1 GiB is).
            journal.queued.clear()
            queued.error = EventEncodingError("the append takes more than 1 GiB")
            queued.ready.set()
        assert len(errors) == 1
        journal.full = False
        await _ask_committed(runtime, journal, cart, "plum")
        assert await _items(runtime, cart) == ["apple", "plum"]
        assert runtime.statistics().append_failures == 1
    assert _stored(journal) == ["apple", "plum"]


@pytest.mark.anyio
async def test_an_append_taken_back_while_it_waits_for_room_leaves_no_trace(
    cart: Aggregate[Any, Add, Added],
) -> None:
    journal = EncodingManualJournal(start_appends=True)
    async with Runtime(journal) as runtime:
        await _ask_committed(runtime, journal, cart, "apple")
        journal.full = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, cart, "c", Add("pear"))
            await anyio.wait_all_tasks_blocked()
            assert len(journal.queued) == 1
            tg.cancel_scope.cancel()  # its caller goes away before the append is placed
        assert journal.queued == []
        journal.full = False
        await _ask_committed(runtime, journal, cart, "plum")
        assert await _items(runtime, cart) == ["apple", "plum"]
        assert runtime.statistics().append_failures == 0  # a cancellation is no failure
    assert _stored(journal) == ["apple", "plum"]


class Interrupt(BaseException):
    """A BaseException from user code, as KeyboardInterrupt would be."""


def interrupting(aggregate: Aggregate[Any, Add, Added]) -> Aggregate[Any, Add, Added]:
    """``aggregate`` with an evolve interrupted once it has folded an item "stop"."""

    def evolve(state: Any, event: Added) -> Any:
        state = aggregate.evolve(state, event)
        if event.item == "stop":
            raise Interrupt("interrupted in evolve")
        return state

    return Aggregate("cart", aggregate.initial, decide, evolve, events={"Added": Added})


@pytest.mark.anyio
async def test_an_evolve_interrupted_by_a_base_exception_leaves_no_trace(
    cart: Aggregate[Any, Add, Added],
) -> None:
    interrupted = interrupting(cart)
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(interrupted, "c", Add("apple"))
        with pytest.raises(Interrupt):
            await runtime.ask(interrupted, "c", Add("stop"))
        assert await _items(runtime, interrupted) == ["apple"]
        assert (await runtime.ask(interrupted, "c", Add("plum"))).version == 2
        assert await _items(runtime, interrupted) == ["apple", "plum"]
        assert runtime.statistics().crashes == 0
