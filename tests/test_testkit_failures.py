"""A failing expectation of the test kit says where it differs; misuse says how to call it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runtime import Aggregate, CommandRejected
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
