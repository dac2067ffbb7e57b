"""A failing expectation of the test kit says where it differs; misuse says how to call it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import Aggregate, CommandRejected, EventType
from runtime.testing import AggregateTest

from .test_runtime_bank import (
    EVENTS,
    Account,
    Deposit,
    Deposited,
    Opened,
    Withdraw,
    Withdrawn,
    account,
    evolve,
)


def test_then_names_the_first_event_and_field_that_differ() -> None:
    test = AggregateTest(account).given(Opened("ada")).when(Deposit(5))
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "expected events [Deposited(amount=6)], got [Deposited(amount=5)]: "
            "event 0 (Deposited) differs: amount is 5, expected 6"
        ),
    ):
        test.then(Deposited(6))
    with pytest.raises(AssertionError, match=r"event 0 is a Deposited, expected a Withdrawn$"):
        test.then(Withdrawn(5))
    with pytest.raises(AssertionError, match=r"got 1 event, expected 2$"):
        test.then(Deposited(5), Deposited(5))
    with pytest.raises(AssertionError, match=r"got 1 event, expected 0$"):
        test.then()
    with pytest.raises(
        AssertionError,
        match=r"expected to be the class Deposited itself; then takes events, such as Deposited",
    ):
        test.then(Deposited)  # type: ignore[arg-type]


def test_then_state_names_the_fields_that_differ() -> None:
    test = AggregateTest(account).given(Opened("ada")).when(Deposit(5))
    with pytest.raises(
        AssertionError, match=r"got Account\(.*\): balance is 5, expected 6; deposits is 1"
    ):
        test.then_state(Account("ada", 6, 2))


def test_then_given_a_list_of_events_says_to_pass_them_one_by_one() -> None:
    test = AggregateTest(account).given(Opened("ada")).when(Deposit(5))
    events: Any = [Deposited(5)]
    with pytest.raises(TypeError, match=r"then takes the expected events one by one"):
        test.then(events)
    test.then(*events)


def _refuse(state: Account, command: object) -> list[Any]:
    raise CommandRejected("insufficient funds (balance 0)")


strict = Aggregate("strict", Account(), _refuse, evolve, events=EVENTS)


def test_then_rejected_matches_the_reason_itself_even_when_it_is_no_pattern_of_itself() -> None:
    test = AggregateTest(strict).when(Withdraw(5))
    test.then_rejected("insufficient funds (balance 0)")
    test.then_rejected(r"balance \d")
    test.then_rejected("funds (balance")  # no regular expression: searched for as text
    with pytest.raises(AssertionError, match=r"re\.escape\('funds \(balance 0\)'\)$"):
        test.then_rejected("funds (balance 0)")
    with pytest.raises(AssertionError, match=r"got 'insufficient funds \(balance 0\)'$"):
        test.then_rejected("overdrawn")


def test_then_rejected_refuses_arguments_of_the_wrong_kind() -> None:
    test = AggregateTest(strict).when(Withdraw(5))
    wrong: Any = CommandRejected("insufficient funds (balance 0)")
    with pytest.raises(TypeError, match=r"takes the reason as a str .*pass kind=\.\.\."):
        test.then_rejected(wrong)
    with pytest.raises(TypeError, match=r"kind must be CommandRejected or a subclass of it"):
        test.then_rejected(kind=wrong)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Filled:
    """Sets the whole of a basket's state, so a test can give any state."""

    lines: list[Line]
    counts: list[int] = field(default_factory=list)
    tags: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Basket:
    lines: tuple[Line, ...] = ()
    counts: tuple[int, ...] = ()
    tags: dict[str, int] = field(default_factory=dict)


def _fill(state: Basket, event: Filled) -> Basket:
    return Basket(tuple(event.lines), tuple(event.counts), dict(event.tags))


def _decide(state: Basket, command: object) -> list[Filled]:
    return [command] if isinstance(command, Filled) else []


basket = Aggregate(
    "basket",
    Basket(),
    _decide,
    _fill,
    events={
        "Filled": EventType(
            Filled,
            decode=lambda data: Filled(
                [Line(**line) for line in data["lines"]], data["counts"], data["tags"]
            ),
        )
    },
)


def _basket_test(**state: Any) -> AggregateTest[Basket, object, Filled]:
    return AggregateTest(basket).given(Filled(**state)).when(object())


def test_a_difference_deep_in_a_long_field_is_named_not_cut_off_with_its_repr() -> None:
    lines = [Line(f"sku-{index}", 1) for index in range(20)]
    test = _basket_test(lines=lines)
    expected = Basket((*lines[:-1], Line("sku-19", 2)))
    with pytest.raises(AssertionError, match=r": lines\[19\]\.quantity is 1, expected 2$"):
        test.then_state(expected)
    with pytest.raises(
        AssertionError,
        match=r": lines holds 20 items, expected 21: "
        r"lines\[20\] is missing, expected Line\(sku='x', quantity=1\)$",
    ):
        test.then_state(Basket((*lines, Line("x", 1))))
    with pytest.raises(
        AssertionError,
        match=r": lines\[0\]\.sku is 'sku-0', expected 'y' \(lines holds 20 items, expected 1\)$",
    ):
        test.then_state(Basket((Line("y", 1),)))


def test_a_difference_late_in_a_long_text_shows_where_the_texts_part() -> None:
    sku = "a" * 250 + "b" * 50
    test = _basket_test(lines=[Line(sku, 1)])
    with pytest.raises(
        AssertionError,
        match=r": lines\[0\]\.sku differs from character 250 on: \.\.\.'a{20}b{50}', expected "
        r"\.\.\.'a{20}c' \(300 characters, expected 251\)$",
    ):
        test.then_state(Basket((Line("a" * 250 + "c", 1),)))


def test_a_difference_in_a_dict_names_its_key() -> None:
    test = _basket_test(lines=[], tags={"a": 1, "b": 2})
    with pytest.raises(AssertionError, match=r": tags\['b'\] is 2, expected 3$"):
        test.then_state(Basket(tags={"a": 1, "b": 3}))
    with pytest.raises(
        AssertionError,
        match=r": tags lacks the keys \['c'\] and has the keys \['b'\], not expected$",
    ):
        test.then_state(Basket(tags={"a": 1, "c": 2}))


def test_a_difference_in_an_event_is_named_down_to_the_item() -> None:
    lines = [Line(f"sku-{index}", 1) for index in range(20)]
    test = AggregateTest(basket).when(Filled(lines))
    with pytest.raises(
        AssertionError,
        match=r"event 0 \(Filled\) differs: lines\[7\]\.sku is 'sku-7', expected 'z'$",
    ):
        test.then(Filled([*lines[:7], Line("z", 1), *lines[8:]]))


@given(st.lists(st.integers(0, 3), max_size=8), st.lists(st.integers(0, 3), max_size=8))
def test_the_first_item_named_is_where_the_states_first_differ(
    got: list[int], expected: list[int]
) -> None:
    test = _basket_test(lines=[], counts=got)
    if got == expected:
        test.then_state(Basket(counts=tuple(expected)))
        return
    with pytest.raises(AssertionError) as failed:
        test.then_state(Basket(counts=tuple(expected)))
    said = str(failed.value).rpartition("): ")[2]
    item = re.match(r"counts\[(\d+)\] is (\d+), expected (\d+)", said)
    if item is None:  # One is a prefix of the other.
        assert said.startswith(f"counts holds {len(got)} items, expected {len(expected)}: ")
        shorter = min(len(got), len(expected))
        assert got[:shorter] == expected[:shorter]
        if len(got) > shorter:
            assert said.endswith(f"counts[{shorter}] is {got[shorter]}, not expected")
        else:
            assert said.endswith(f"counts[{shorter}] is missing, expected {expected[shorter]}")
        return
    index, have, want = map(int, item.groups())
    assert got[:index] == expected[:index]
    assert (got[index], expected[index]) == (have, want)
