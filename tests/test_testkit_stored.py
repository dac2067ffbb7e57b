"""The test kit folds events as older versions of the code stored them (``given_stored``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest

from journals import EventEncodingError
from runtime import Aggregate, CommandRejected, EventType, UnknownEventType
from runtime.testing import AggregateTest


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class Deposited:
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class Balance:
    cents: int = 0
    currency: str = ""


def _from_1(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "currency": "EUR"}  # version 1 had no currency: all were in euros


def _from_2(data: dict[str, Any]) -> dict[str, Any]:
    return {"amount_cents": data["amount"] * 100, "currency": data["currency"]}


def decide(state: Balance, command: Deposit) -> list[Deposited]:
    if state.currency and command.currency != state.currency:
        raise CommandRejected(f"the account holds {state.currency}")
    return [Deposited(command.amount * 100, command.currency)]


def evolve(state: Balance, event: Deposited) -> Balance:
    return Balance(state.cents + event.amount_cents, event.currency)


account = Aggregate(
    "account",
    Balance(),
    decide,
    evolve,
    events={"Deposited": EventType(Deposited, version=3, upcasters={1: _from_1, 2: _from_2})},
)


def test_events_stored_by_older_versions_are_upcast_and_folded() -> None:
    test = (
        AggregateTest(account)
        .given_stored("Deposited", 1, {"amount": 2})
        .given_stored("Deposited", 2, {"amount": 3, "currency": "EUR"})
        .given_stored("Deposited", 3, {"amount_cents": 50, "currency": "EUR"})
    )
    assert test.state == Balance(550, "EUR")
    test.when(Deposit(1, "USD")).then_rejected("the account holds EUR")


def test_an_upcaster_that_fails_fails_the_test_as_a_replay_would() -> None:
    # A typo in version 1's data: the upcaster from 2 finds no "amount".
    with pytest.raises(KeyError, match="amount"):
        AggregateTest(account).given_stored("Deposited", 1, {"amonut": 2})


def test_a_version_the_aggregate_cannot_read_is_refused_as_a_replay_refuses_it() -> None:
    with pytest.raises(UnknownEventType, match=r"'account\.Deposited/4'"):
        AggregateTest(account).given_stored("Deposited", 4, {"amount_cents": 1, "currency": "X"})
    with pytest.raises(UnknownEventType, match=r"'account\.Withdrawn/1'"):
        AggregateTest(account).given_stored("Withdrawn", 1, {})


@pytest.mark.parametrize("given", ["account.Deposited", "Deposited/1", "account.Deposited/1"])
def test_a_stored_type_given_as_the_event_name_says_to_give_the_name_alone(given: str) -> None:
    # Read as an unknown type, it would advise registering that name with the aggregate.
    with pytest.raises(
        ValueError,
        match=r"given_stored takes the event name as registered in events=, without the "
        rf"aggregate's name or a version: given_stored\('Deposited', 1, data\), not '{given}'",
    ):
        AggregateTest(account).given_stored(given, 1, {"amount": 2})


def test_stored_data_goes_through_the_journals_json() -> None:
    # A tuple comes back as a list, as from the journal; a value JSON cannot hold is refused.
    seen: list[Any] = []

    def remember(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data["tags"])
        return {"amount_cents": 1, "currency": "EUR"}

    tagged = Aggregate(
        "tagged",
        Balance(),
        decide,
        evolve,
        events={"Deposited": EventType(Deposited, version=2, upcasters={1: remember})},
    )
    AggregateTest(tagged).given_stored("Deposited", 1, {"tags": ("a", "b")})
    assert seen == [["a", "b"]]
    with pytest.raises(EventEncodingError):
        AggregateTest(tagged).given_stored("Deposited", 1, {"tags": {1, 2}})


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "1"])
def test_a_version_is_a_whole_number_from_1(version: Any) -> None:
    with pytest.raises(ValueError, match="version must be a whole number >= 1"):
        AggregateTest(account).given_stored("Deposited", version, {})


@dataclass(frozen=True, slots=True)
class Booked:
    at: datetime


def _booked(data: dict[str, Any]) -> Booked:
    return Booked(datetime.fromisoformat(data["at"]))


def _book(state: datetime | None, command: Booked) -> list[Booked]:
    return [command]


def _booked_at(state: datetime | None, event: Booked) -> datetime | None:
    return event.at


booking: Aggregate[datetime | None, Booked, Booked] = Aggregate(
    "booking",
    None,
    _book,
    _booked_at,
    events={"Booked": EventType(Booked, decode=_booked)},
)


class CentralEurope(tzinfo):
    """A zone with rules of its own, as a ZoneInfo is (winter only, for the test)."""

    def utcoffset(self, moment: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, moment: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, moment: datetime | None) -> str:
        return "CET"


def test_a_datetime_must_come_back_in_its_own_time_zone() -> None:
    # Stored as its JSON form, a zone with rules comes back as a fixed offset: the same
    # instant, but "180 days later" then lands an hour off across a change of daylight time.
    paris = datetime(2024, 1, 15, 10, 0, tzinfo=CentralEurope())
    with pytest.raises(AssertionError, match="time zone"):
        AggregateTest(booking).when(Booked(paris))
    fixed = datetime(2024, 1, 15, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    AggregateTest(booking).when(Booked(fixed)).then(Booked(fixed))
    utc = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    AggregateTest(booking).when(Booked(utc)).then(Booked(utc))


@dataclass(frozen=True, slots=True)
class Credited:
    """Retired: merged into Deposited, and read as one."""

    amount: int


def test_history_of_a_type_read_as_another_is_given_as_stored() -> None:
    # Its events are Deposited and Credited, although decide returns Deposited alone.
    merged: Aggregate[Balance, Deposit, Any] = Aggregate(
        "account",
        Balance(),
        decide,
        evolve,
        events={
            "Deposited": Deposited,
            "Credited": EventType(Credited, decode=lambda data: Deposited(data["amount"], "EUR")),
        },
    )
    with pytest.raises(
        AssertionError,
        match=r"its decode builds a Deposited, as it reads a type merged or split into others: "
        r"give such history as stored, \.given_stored\('Credited', 1, data\), or give the "
        r"Deposited it stands for",
    ):
        AggregateTest(merged).given(Credited(5))
    test = AggregateTest(merged).given_stored("Credited", 1, {"amount": 5})
    test.when(Deposit(1, "EUR")).then(Deposited(100, "EUR")).then_state(Balance(105, "EUR"))


def test_a_stored_form_the_class_no_longer_takes_says_how_to_read_it() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument") as caught:
        AggregateTest(account).given_stored("Deposited", 3, {"amount_cents": 5})
    assert caught.value.__notes__ == [
        "Deposited(...) requires 'currency', and the event stored as 'account.Deposited/3' "
        "holds the keys ['amount_cents']: the class has changed since such events were stored, "
        "without a new version. Keep the stored form readable: register its new form as "
        "version 4, with an upcaster that turns the data of version 3 into it: "
        "EventType(Deposited, version=4, upcasters={3: ...})"
    ]


@dataclass(frozen=True, init=False)
class Tolerant:
    """A tolerant reader: it takes and ignores the keys of its older forms."""

    amount: int

    def __init__(self, amount: int, **older: Any) -> None:
        if type(amount) is not int:
            raise TypeError(f"amount must be a whole number, not {amount!r}")
        object.__setattr__(self, "amount", amount)


def _tolerant() -> Aggregate[int, Any, Tolerant]:
    return Aggregate(
        "tally",
        0,
        lambda total, command: [],
        lambda total, event: total + event.amount,
        events={"Added": Tolerant},
    )


def test_a_class_that_takes_any_key_is_not_said_to_refuse_one() -> None:
    # Its own check failed, on data whose keys it takes: the class has not changed, and a
    # note saying it had (or that it requires its **older) would send its reader astray.
    with pytest.raises(TypeError, match="amount must be a whole number") as caught:
        AggregateTest(_tolerant()).given_stored("Added", 1, {"amount": "5", "unit": "g"})
    assert getattr(caught.value, "__notes__", []) == []
    AggregateTest(_tolerant()).given_stored("Added", 1, {"amount": 5, "unit": "g"})


def test_a_class_that_takes_any_key_is_said_to_require_its_named_arguments_only() -> None:
    with pytest.raises(TypeError, match="missing 1 required positional argument") as caught:
        AggregateTest(_tolerant()).given_stored("Added", 1, {"unit": "g"})
    [note] = caught.value.__notes__
    assert note.startswith(
        "Tolerant(...) requires 'amount', and the event stored as 'tally.Added/1' holds the "
        "keys ['unit']: the class has changed"
    )
