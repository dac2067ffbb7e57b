"""Aggregate code that changes a state it must leave alone.

An ``initial`` state changed in place, which every entity starts from: the runtime refuses to
activate entities from it, and the test kit fails the ``evolve`` that changes it, rather than
let every later entity start from (and share) another entity's state. A ``decide`` that changes
the state it is given: the test kit fails it, since a real run keeps the change unrecorded."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

import journals._memory
from journals import MemoryJournal
from runtime import Aggregate, CommandRejected, InitialStateChanged, Runtime
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
async def test_a_replay_up_to_a_moment_that_folds_into_the_initial_state_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A moment before the last event stops the fold early, and that stop must not skip the
    # check: the read would answer the changed initial state as a past one, unreported.
    stamps = iter([1_700_000_000 * 10**9, 1_700_000_010 * 10**9])
    first = datetime.fromtimestamp(1_700_000_000, UTC)  # the moment of the first event
    monkeypatch.setattr(journals._memory, "time", SimpleNamespace(time_ns=lambda: next(stamps)))
    async with MemoryJournal() as journal:
        pure = Aggregate("cart", Cart(), decide, evolve_new, events={"Added": Added})
        async with Runtime(journal) as runtime:
            await runtime.ask(pure, "1", Add("apple"))
            await runtime.ask(pure, "1", Add("pear"))
            assert await runtime.state_at(pure, "1", at=first) == Cart({"apple": 1})
        cart = in_place_cart()
        async with Runtime(journal) as runtime:
            with pytest.raises(InitialStateChanged, match=r"is now Cart\(items=\{'apple': 1\}"):
                await runtime.state_at(cart, "1", at=first)


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
    cart = in_place_cart()
    with pytest.raises(AssertionError, match="initial state of aggregate 'cart'"):
        AggregateTest(cart).when(Add("pear"))


EMPTY = Cart()


def test_the_test_kit_hands_decide_and_evolve_the_initial_state_itself() -> None:
    # An in-place evolve that tells the shared initial state by identity and leaves it alone,
    # and a decide that tells a new entity so: both right, and the kit takes them.
    def decide_existing(state: Cart, command: Add) -> list[Added]:
        if state is EMPTY and command.sku == "gift":
            raise CommandRejected("a gift needs an order")
        return [Added(command.sku)]

    def evolve_own(state: Cart, event: Added) -> Cart:
        state = Cart() if state is EMPTY else state
        return evolve_in_place(state, event)

    own = Aggregate("cart", EMPTY, decide_existing, evolve_own, events={"Added": Added})
    AggregateTest(own).when(Add("gift")).then_rejected("a gift needs an order")
    AggregateTest(own).given(Added("a")).when(Add("a")).then(Added("a")).then_state(Cart({"a": 2}))
    assert Cart() == EMPTY


def test_the_test_kit_takes_an_evolve_that_makes_a_new_state() -> None:
    cart = Aggregate("cart", Cart(), decide, evolve_new, events={"Added": Added})
    AggregateTest(cart).given(Added("a")).when(Add("a")).then(Added("a")).then_state(Cart({"a": 2}))


@dataclass(frozen=True)
class Remove:
    sku: str
    count: int = 1


@dataclass(frozen=True)
class Removed:
    sku: str


def decide_popping(state: Cart, command: Add | Remove) -> list[Added | Removed]:
    if isinstance(command, Add):
        return [Added(command.sku)]
    # Against the rule: decide changes the state it was given, then rejects the command.
    held = state.items.pop(command.sku, 0)
    if held < command.count:
        raise CommandRejected(f"only {held} of {command.sku} in the cart")
    return [Removed(command.sku)]


def evolve_removing(state: Cart, event: Added | Removed) -> Cart:
    items = dict(state.items)
    if isinstance(event, Added):
        items[event.sku] = items.get(event.sku, 0) + 1
    else:
        items.pop(event.sku, None)
    return Cart(items)


popping: Aggregate[Cart, Add | Remove, Added | Removed] = Aggregate(
    "cart", Cart(), decide_popping, evolve_removing, events={"Added": Added, "Removed": Removed}
)


def test_the_test_kit_fails_a_decide_that_changes_the_state_it_is_given() -> None:
    with pytest.raises(
        AssertionError,
        match=r"decide of aggregate 'cart' changed the state it was given, on Remove\(sku='a', "
        r"count=2\) \(against a copy from before: state.items has the keys \['a'\]",
    ):
        AggregateTest(popping).given(Added("a")).when(Remove("a", 2))
    AggregateTest(popping).when(Remove("a")).then_rejected("only 0")  # changes nothing


@pytest.mark.anyio
async def test_what_the_test_kit_fails_in_decide_breaks_a_real_run() -> None:
    # What the kit's check stands for: the rejected command's change stays in the entity's
    # state in memory, which then differs from the fold of its events.
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(popping, "1", Add("a"))
        with pytest.raises(CommandRejected):
            await runtime.ask(popping, "1", Remove("a", 2))
        assert await runtime.state(popping, "1") == Cart({})
        assert await runtime.state_at(popping, "1", version=1) == Cart({"a": 1})
