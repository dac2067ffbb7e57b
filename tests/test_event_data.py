"""What an event is stored as: exactly its fields, whatever else the object holds."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import orjson
import pytest

from journals import MemoryJournal
from runtime import Aggregate, Runtime
from runtime.testing import AggregateTest


@dataclass(frozen=True)
class LinePriced:
    quantity: int
    unit_cents: int

    @cached_property
    def total_cents(self) -> int:
        return self.quantity * self.unit_cents


@dataclass(frozen=True)
class Order:
    total_cents: int = 0


def price(state: Order, command: LinePriced) -> list[LinePriced]:
    return [command]


def add_line(state: Order, event: LinePriced) -> Order:
    return replace(state, total_cents=state.total_cents + event.total_cents)


order = Aggregate("order", Order(), price, add_line, events={"LinePriced": LinePriced})


@pytest.mark.anyio
async def test_an_attribute_evolve_caches_on_an_event_is_not_stored() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(order, "1", LinePriced(2, 50))
            await runtime.ask(order, "1", LinePriced(1, 100))
        stored = [recorded.data async for recorded in journal.read("order-1")]
        assert stored == [
            {"quantity": 2, "unit_cents": 50},
            {"quantity": 1, "unit_cents": 100},
        ]
        async with Runtime(journal) as runtime:  # Replayed from the journal.
            assert await runtime.state(order, "1") == Order(200)


class Totals:
    """A base class that caches what it computes: the attribute is no field of the event."""

    quantity: int
    unit_cents: int

    @cached_property
    def total_cents(self) -> int:
        return self.quantity * self.unit_cents


@dataclass(frozen=True)
class LinePricedByBase(Totals):
    quantity: int
    unit_cents: int


@dataclass(frozen=True)
class LinePricedLazily:
    quantity: int
    unit_cents: int

    def __getattr__(self, name: str) -> int:
        # Computes total_cents on first read and keeps it, as cached_property does.
        if name != "total_cents":
            raise AttributeError(name)
        value = self.__dict__[name] = self.quantity * self.unit_cents
        return value


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [LinePricedByBase, LinePricedLazily])
async def test_an_attribute_cached_by_a_base_class_or_getattr_is_not_stored(
    cls: type[Any],
) -> None:
    priced = Aggregate("order", Order(), price, add_line, events={"LinePriced": cls})
    async with MemoryJournal() as journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(priced, "1", cls(2, 50))
            await runtime.ask(priced, "1", cls(1, 100))
        stored = [recorded.data async for recorded in journal.read("order-1")]
        assert stored == [
            {"quantity": 2, "unit_cents": 50},
            {"quantity": 1, "unit_cents": 100},
        ]
        async with Runtime(journal) as runtime:  # Replayed from the journal.
            assert await runtime.state(priced, "1") == Order(200)


@dataclass(frozen=True)
class Plain:
    amount: int


@dataclass(frozen=True)
class Validated:
    amount: int

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("negative")


@dataclass(frozen=True)
class WithExtra:
    amount: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "doubled", self.amount * 2)  # Not a field.


@dataclass
class Mutable:
    amount: int


@dataclass(frozen=True)
class Cached:
    amount: int

    @cached_property
    def doubled(self) -> int:
        return self.amount * 2


@dataclass(frozen=True, slots=True)
class Slotted:
    amount: int
    _hidden: int = 0


@dataclass(frozen=True)
class Hidden:
    amount: int
    _hidden: int = field(default=0)

    @cached_property
    def doubled(self) -> int:
        return self.amount * 2


_EVENTS: dict[str, type[Any]] = {
    cls.__name__: cls for cls in [Plain, Validated, WithExtra, Mutable, Cached, Slotted, Hidden]
}
_MIXED: Aggregate[None, Any, Any] = Aggregate(
    "mixed", None, lambda state, command: [], lambda state, event: state, events=_EVENTS
)


@pytest.mark.parametrize("cls", list(_EVENTS.values()), ids=list(_EVENTS))
def test_the_data_of_an_event_is_its_fields_even_after_it_gains_attributes(
    cls: type[Any],
) -> None:
    event = cls(3)
    _, data = _MIXED.event_columns([event, event])
    # What evolve may do between taking the data and the journal encoding it.
    if isinstance(event, Cached | Hidden):
        assert event.doubled == 6
    if isinstance(event, Mutable):
        event.cached = True  # type: ignore[attr-defined]
    for each in data:
        stored = orjson.loads(orjson.dumps(each))
        assert stored == {"amount": 3}
        assert _MIXED.decode_event(f"mixed.{cls.__name__}/1", stored) == cls(3)


def test_an_event_whose_dict_holds_just_its_fields_is_handed_on_as_is() -> None:
    # orjson encodes it fastest itself: nothing may be built for it on the write path.
    for event in [Plain(1), Validated(1)]:
        _, data = _MIXED.event_columns([event])
        assert data[0] is event


@dataclass(frozen=True)
class Counted:
    amount: int


def _evolve_and_mark(state: int, event: Counted) -> int:
    object.__setattr__(event, "seen", True)  # What evolve must not do.
    return state + event.amount


def test_the_kit_fails_an_evolve_that_adds_to_what_the_journal_stores() -> None:
    marking = Aggregate(
        "counter", 0, lambda state, command: [command], _evolve_and_mark, events={"C": Counted}
    )
    with pytest.raises(AssertionError, match=r"evolve changed what event Counted\(amount=1\)"):
        AggregateTest(marking).when(Counted(1))
    with pytest.raises(AssertionError, match=r"b'\{\"amount\":1\}' to b'\{\"amount\":1,"):
        AggregateTest(marking).given(Counted(1))


@dataclass(frozen=True)
class Tagged:
    tags: list[str]


def _evolve_and_append(state: int, event: Tagged) -> int:
    event.tags.append("seen")  # Changes the stored data: the same list is encoded later.
    return state + 1


def test_the_kit_fails_an_evolve_that_changes_a_list_the_event_holds() -> None:
    appending = Aggregate(
        "tagger", 0, lambda state, command: [command], _evolve_and_append, events={"T": Tagged}
    )
    with pytest.raises(AssertionError, match=r"must not change the event"):
        AggregateTest(appending).when(Tagged(["a"]))


def test_the_kit_passes_an_event_with_a_cached_property() -> None:
    (
        AggregateTest(order)
        .given(LinePriced(1, 100))
        .when(LinePriced(2, 50))
        .then(LinePriced(2, 50))
        .then_state(Order(200))
    )
