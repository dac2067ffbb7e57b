"""An aggregate's ``initial`` state, which every entity starts from, changed in place: the
runtime refuses to activate entities from it, and the test kit fails the ``evolve`` that
changes it, rather than let every later entity start from (and share) another entity's state."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import pytest

from journals import MemoryJournal
from runtime import Aggregate, InitialStateChanged, Runtime
from runtime.testing import AggregateTest


@dataclass(frozen=True)
class Add:
    sku: str


@dataclass(frozen=True)
class Added:
    sku: str


@dataclass
class Cart:
    items: dict[str, int] = field(default_factory=dict)


def decide(state: Cart, command: Add) -> list[Added]:
    return [Added(command.sku)]


def evolve_in_place(state: Cart, event: Added) -> Cart:
    state.items[event.sku] = state.items.get(event.sku, 0) + 1
    return state


def evolve_new(state: Cart, event: Added) -> Cart:
    return replace(state, items={**state.items, event.sku: state.items.get(event.sku, 0) + 1})


def in_place_cart() -> Aggregate[Cart, Add, Added]:
    return Aggregate("cart", Cart(), decide, evolve_in_place, events={"Added": Added})


@pytest.mark.anyio
async def test_an_entity_is_not_activated_from_an_initial_state_evolve_changed() -> None:
    cart = in_place_cart()
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(cart, "1", Add("apple"))  # changes cart.initial itself
        with pytest.raises(
            InitialStateChanged,
            match=r"initial state of aggregate 'cart' was changed in place: it was "
            r"Cart\(items=\{\}\) and is now Cart\(items=\{'apple': 1\}\).*give initial=None",
        ):
            await runtime.ask(cart, "2", Add("pear"))
        with pytest.raises(InitialStateChanged):
            await runtime.state_at(cart, "2", version=0)


@pytest.mark.anyio
async def test_a_replay_that_folds_into_the_initial_state_in_place_is_refused() -> None:
    async with MemoryJournal() as journal:
        pure = Aggregate("cart", Cart(), decide, evolve_new, events={"Added": Added})
        async with Runtime(journal) as runtime:
            await runtime.ask(pure, "1", Add("apple"))
        cart = in_place_cart()
        async with Runtime(journal) as runtime:
            with pytest.raises(InitialStateChanged, match="is now Cart"):
                await runtime.state_at(cart, "1", version=1)
        cart = in_place_cart()
        async with Runtime(journal) as runtime:
            with pytest.raises(InitialStateChanged, match="is now Cart"):
                await runtime.state(cart, "1")  # the activation's own replay


@pytest.mark.anyio
async def test_a_changeable_initial_state_left_unchanged_serves_every_entity() -> None:
    cart = Aggregate("cart", Cart(), decide, evolve_new, events={"Added": Added})
    async with MemoryJournal() as journal, Runtime(journal, max_live_actors=1) as runtime:
        for entity in "12312":
            await runtime.ask(cart, entity, Add(entity))
        assert await runtime.state(cart, "1") == Cart({"1": 2})
        assert await runtime.state_at(cart, "2", version=1) == Cart({"2": 1})
    assert cart.initial == Cart()


@pytest.mark.anyio
async def test_an_initial_state_that_cannot_be_copied_is_not_checked() -> None:
    @dataclass
    class Guarded:
        lock: threading.Lock = field(default_factory=threading.Lock)
        count: int = 0

    def count(state: Guarded, event: Added) -> Guarded:
        return replace(state, count=state.count + 1)

    def decide_guarded(state: Guarded, command: Add) -> list[Added]:
        return [Added(command.sku)]

    guarded = Aggregate("guarded", Guarded(), decide_guarded, count, events={"Added": Added})
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(guarded, "1", Add("a"))
        assert (await runtime.state(guarded, "1")).count == 1


def test_the_test_kit_fails_an_evolve_that_changes_the_initial_state() -> None:
    cart = in_place_cart()
    with pytest.raises(
        AssertionError, match=r"evolve changed the initial state of aggregate 'cart' in place"
    ):
        AggregateTest(cart).given(Added("apple")).when(Add("pear"))
    assert cart.initial == Cart()  # left as it was for the tests after it
    with pytest.raises(AssertionError, match="initial state of aggregate 'cart'"):
        AggregateTest(cart).when(Add("pear"))


def test_the_test_kit_takes_an_evolve_that_makes_a_new_state() -> None:
    cart = Aggregate("cart", Cart(), decide, evolve_new, events={"Added": Added})
    AggregateTest(cart).given(Added("a")).when(Add("a")).then(Added("a")).then_state(Cart({"a": 2}))
