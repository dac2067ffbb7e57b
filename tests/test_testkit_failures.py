"""A failing expectation of the test kit says where it differs; misuse says how to call it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runtime.testing import AggregateTest

from .test_runtime_bank import (
    Account,
    Deposit,
    Deposited,
    Opened,
    Withdrawn,
    account,
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
