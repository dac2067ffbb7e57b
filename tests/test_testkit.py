"""The user test kit: given / when / then, with encoding round trips, and the manual clock."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import pytest

from journals import MemoryJournal
from journals._encoding import EVENT_BYTES_MAX
from runtime import Aggregate, CommandRejected, EventType, Runtime
from runtime._exceptions import InvalidDecision
from runtime._snapshots import difference
from runtime.testing import AggregateTest, ManualClock, round_trip_state

from .test_runtime_bank import (
    EVENTS,
    Account,
    Deposit,
    Deposited,
    Explode,
    Noop,
    Open,
    Opened,
    Withdraw,
    Withdrawn,
    account,
    evolve,
    make_account,
)
from .test_snapshot_encoding import Paid, Pay, make_order, rebuilt_order


@dataclass(frozen=True)
class Tagged:
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Tag:
    tags: tuple[str, ...]


def tag_decide(state: int, command: Tag) -> list[Tagged]:
    return [Tagged(command.tags)]


def tag_evolve(state: int, event: Tagged) -> int:
    return state + len(event.tags)


def test_given_when_then_events() -> None:
    (
        AggregateTest(account)
        .given(Opened("ada"), Deposited(50))
        .when(Withdraw(20))
        .then(Withdrawn(20))
        .then_state(Account("ada", 30, 1))
    )


def test_given_when_then_rejected() -> None:
    test = AggregateTest(account).given(Opened("ada"), Deposited(50)).when(Withdraw(80))
    test.then_rejected("insufficient funds")
    test.then_rejected(kind=CommandRejected)
    with pytest.raises(AssertionError, match="expected a rejection matching 'overdrawn'"):
        test.then_rejected("overdrawn")
    with pytest.raises(AssertionError, match="but the command was rejected"):
        test.then(Withdrawn(80))


def test_then_reports_adifference() -> None:
    test = AggregateTest(account).given(Opened("ada")).when(Deposit(5))
    with pytest.raises(AssertionError, match=r"expected events \[Deposited\(amount=6\)\]"):
        test.then(Deposited(6))
    with pytest.raises(AssertionError, match="expected a rejection"):
        test.then_rejected()
    AggregateTest(account).when(Noop()).then()


def test_then_before_when_is_a_mistake() -> None:
    with pytest.raises(AssertionError, match=r"call \.when"):
        AggregateTest(account).then()


def test_a_crash_in_decide_propagates() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        AggregateTest(account).when(Explode())


def test_an_event_that_does_not_survive_the_journal_fails_the_test() -> None:
    tags = Aggregate("tags", 0, tag_decide, tag_evolve, events={"Tagged": Tagged})
    with pytest.raises(AssertionError, match="comes back from the journal as"):
        AggregateTest(tags).when(Tag(("a", "b")))
    with pytest.raises(AssertionError, match="comes back from the journal as"):
        AggregateTest(tags).given(Tagged(("a",)))
    fixed = Aggregate(
        "tags",
        0,
        tag_decide,
        tag_evolve,
        events={"Tagged": EventType(Tagged, decode=lambda d: Tagged(tuple(d["tags"])))},
    )
    AggregateTest(fixed).given(Tagged(("a",))).when(Tag(("b",))).then(Tagged(("b",))).then_state(2)


def test_state_round_trip_is_checked_when_snapshots_are_on() -> None:
    snapshotting = make_account(snapshot_every=10)
    AggregateTest(snapshotting).given(Opened("ada")).when(Deposit(1)).then(Deposited(1))
    broken = make_account(snapshot_every=10, decode_state=lambda data: Account())
    with pytest.raises(AssertionError, match="comes back from a snapshot"):
        AggregateTest(broken).given(Opened("ada")).when(Deposit(1))
    assert round_trip_state(account, Account("x", 1, 1)) == Account("x", 1, 1)


def test_state_round_trip_is_checked_on_request_for_snapshots_on_passivation() -> None:
    order = make_order()  # no snapshot_every: its runtime may snapshot on passivation
    AggregateTest(order).given(Paid(10)).when(Pay(20)).then(Paid(20))
    lost = r"state\.status is a Status and comes back as a str; fix the aggregate's encode_state"
    with pytest.raises(AssertionError, match=lost):
        AggregateTest(order, snapshots=True).given(Paid(10)).when(Pay(20))
    # The state after the given events is checked too, whatever the command does.
    with pytest.raises(AssertionError, match=lost):
        AggregateTest(order, snapshots=True).given(Paid(100)).when(Pay(1))
    rebuilt = make_order(decode_state=rebuilt_order)
    AggregateTest(rebuilt, snapshots=True).given(Paid(10)).when(Pay(20)).then(Paid(20))
    AggregateTest(make_order(snapshot_every=1), snapshots=False).given(Paid(1)).when(Pay(2))
    with pytest.raises(ValueError, match="snapshots must be True, False or None, not 1"):
        AggregateTest(order, snapshots=1)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_manual_clock_wakes_sleepers_when_advanced() -> None:
    clock = ManualClock(10.0)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 5.0)
        tg.start_soon(sleeper, 1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 2
        clock.advance(2.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == [12.0]
        clock.advance(3.0)
    assert woke == [12.0, 15.0]
    assert sorted(clock.sleeps) == [1.0, 5.0]  # trio starts tasks in no fixed order


@pytest.mark.anyio
async def test_a_cancelled_sleeper_is_no_longer_counted() -> None:
    clock = ManualClock()
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.now())

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, 5.0)
            await anyio.wait_all_tasks_blocked()
            assert clock.sleepers == 1
            scope.cancel()
    assert clock.sleepers == 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 1.0)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1
        clock.advance(10.0)
    assert (woke, clock.sleepers) == ([10.0], 0)


@pytest.mark.parametrize("step", [-1.0, -1e-9, math.nan])
def test_a_manual_clock_does_not_go_back(step: float) -> None:
    clock = ManualClock(10.0)
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(step)
    assert clock.now() == 10.0
    clock.advance(0.0)
    assert clock.now() == 10.0


@pytest.mark.anyio
async def test_pass_time_passivates_an_idle_actor_where_one_advance_does_not() -> None:
    for pass_time in (False, True):
        clock = ManualClock()
        async with (
            MemoryJournal() as journal,
            Runtime(journal, clock=clock, passivate_after_s=300) as rt,
        ):
            await rt.ask(account, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            if pass_time:
                await clock.pass_time(400)
            else:
                clock.advance(400)
                await anyio.wait_all_tasks_blocked()
            assert clock.now() == 400
            assert rt.statistics().passivations == (1 if pass_time else 0)


@pytest.mark.anyio
async def test_pass_time_wakes_each_sleeper_at_its_own_deadline_in_order() -> None:
    clock = ManualClock()
    seen: list[tuple[str, float]] = []

    async def ticker(name: str, every: float) -> None:
        while True:
            await clock.sleep(every)
            seen.append((name, clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker, "a", 3.0)
        tg.start_soon(ticker, "b", 5.0)
        await clock.pass_time(10.0)
        assert clock.now() == 10.0
        tg.cancel_scope.cancel()
    assert seen == [("a", 3.0), ("b", 5.0), ("a", 6.0), ("a", 9.0), ("b", 10.0)]
    with pytest.raises(ValueError, match="does not go back"):
        await clock.pass_time(-1.0)


@pytest.mark.anyio
async def test_autojump_clock_moves_time_by_each_sleep() -> None:
    clock = ManualClock(autojump=True)
    await clock.sleep(2.5)
    await clock.sleep(0.5)
    assert clock.now() == 3.0
    assert clock.sleeps == [2.5, 0.5]


@dataclass(frozen=True)
class Limit:
    limit: Any


@dataclass(frozen=True)
class LimitSet:
    limit: Any


def limit_decide(state: Any, command: Limit) -> list[LimitSet]:
    return [LimitSet(command.limit)]


def limit_evolve(state: Any, event: LimitSet) -> Any:
    return event.limit


def _infinite_limit(data: Any) -> LimitSet:
    return LimitSet(math.inf if data["limit"] is None else data["limit"])


@pytest.mark.parametrize(
    ("make_limit", "message"),
    [
        (lambda: math.inf, r"holds a non-finite float \(inf at the value\['limit'\]\)"),
        (lambda: Decimal("1.5"), r"cannot be encoded as JSON \(Type is not JSON serializable: "),
        (lambda: "x" * (EVENT_BYTES_MAX + 1), r"is \d+ bytes encoded; the limit is"),
    ],
    ids=["infinity", "decimal", "too-large"],
)
def test_an_event_the_journal_refuses_fails_the_test_with_the_journals_reason(
    make_limit: Callable[[], Any], message: str
) -> None:
    limit = make_limit()  # Made here: the large one is not kept for the whole session.
    # Even with a decode function that would rebuild it: the journal never stores it.
    limits = Aggregate(
        "limit",
        0.0,
        limit_decide,
        limit_evolve,
        events={"LimitSet": EventType(LimitSet, decode=_infinite_limit)},
    )
    refused = r"the journal refuses event LimitSet\(limit=.{0,200}: (data of )?event 0 "
    with pytest.raises(AssertionError, match=refused + r"\('limit\.LimitSet/1'\) " + message):
        AggregateTest(limits).when(Limit(limit))
    with pytest.raises(AssertionError, match=refused):
        AggregateTest(limits).given(LimitSet(limit))


def test_a_state_a_snapshot_cannot_hold_fails_the_test() -> None:
    limits: Aggregate[Any, Limit, LimitSet] = Aggregate(
        "limit",
        0.0,
        limit_decide,
        limit_evolve,
        events={"LimitSet": EventType(LimitSet, decode=_infinite_limit)},
        snapshot_every=10,
        encode_state=lambda state: {"limit": state},
        decode_state=lambda data: data["limit"],
    )
    with pytest.raises(
        AssertionError,
        match=r"the journal refuses state \{'limit': Decimal\('2'\)\} as a snapshot: snapshot "
        r"data cannot be encoded as JSON",
    ):
        round_trip_state(limits, {"limit": Decimal("2")})
    AggregateTest(limits).when(Limit(2.5)).then(LimitSet(2.5)).then_state(2.5)


def _yielding(state: Account, command: Deposit) -> Any:
    yield Deposited(command.amount)  # A generator: the runtime refuses it.


_RETURNS: dict[str, Callable[[], Any]] = {
    "list": lambda: [Deposited(1)],
    "tuple": lambda: (Deposited(1), Deposited(2)),
    "empty-list": lambda: [],
    "empty-tuple": lambda: (),
    "generator-expression": lambda: (event for event in [Deposited(1)]),
    "generator": lambda: _yielding(Account(), Deposit(1)),
    "one-event": lambda: Deposited(1),
    "none": lambda: None,
    "zero": lambda: 0,
    "empty-dict": lambda: {},
    "empty-str": lambda: "",
    "empty-set": lambda: set(),
    "dict": lambda: {Deposited(1): 1},
    "set": lambda: {Deposited(1), Deposited(2)},
    "str": lambda: "ab",
    "unregistered": lambda: [Deposited(1), "not an event"],
}


@pytest.mark.parametrize("make_returned", _RETURNS.values(), ids=_RETURNS.keys())
@pytest.mark.anyio
async def test_the_kit_accepts_and_refuses_what_the_runtime_does(
    make_returned: Callable[[], Any],
) -> None:
    def decide(state: Account, command: Any) -> Any:
        return make_returned()

    returning = Aggregate("account", Account(), decide, evolve, events=EVENTS)

    def outcome(run: Callable[[], Any]) -> type[BaseException] | None:
        try:
            run()
        except Exception as error:
            return type(error)
        return None

    in_kit = outcome(lambda: AggregateTest(returning).when(Deposit(1)))
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        try:
            await runtime.ask(returning, "42", Deposit(1))
        except Exception as error:
            in_runtime: type[BaseException] | None = type(error)
        else:
            in_runtime = None
    assert in_kit is in_runtime


def test_a_generator_decide_fails_the_test_as_it_fails_every_command() -> None:
    yielding = Aggregate("account", Account(), _yielding, evolve, events=EVENTS)
    with pytest.raises(InvalidDecision, match=r"returned a generator .*must return a list"):
        AggregateTest(yielding).when(Deposit(5))


class Kind(enum.StrEnum):
    GOLD = "gold"

    @property
    def points(self) -> int:
        return 10


@dataclass(frozen=True)
class Award:
    kind: Kind


@dataclass(frozen=True)
class Awarded:
    kind: Kind


def award_decide(state: int, command: Award) -> list[Awarded]:
    return [Awarded(command.kind)]


def award_evolve(state: int, event: Awarded) -> int:
    return state + event.kind.points


def test_an_event_whose_field_changes_type_in_the_journal_fails_the_test() -> None:
    # Kind.GOLD == "gold", so equality alone would let the event through; a replay hands
    # evolve a str, which has no points.
    loyalty = Aggregate("loyalty", 0, award_decide, award_evolve, events={"Awarded": Awarded})
    changed = (
        r"comes back from the journal as Awarded\(kind='gold'\) \(stored as "
        r"'loyalty\.Awarded/1'\): event\.kind is a Kind and comes back as a str"
    )
    with pytest.raises(AssertionError, match=changed):
        AggregateTest(loyalty).when(Award(Kind.GOLD))
    with pytest.raises(AssertionError, match=changed):
        AggregateTest(loyalty).given(Awarded(Kind.GOLD))
    fixed = Aggregate(
        "loyalty",
        0,
        award_decide,
        award_evolve,
        events={"Awarded": EventType(Awarded, decode=lambda data: Awarded(Kind(data["kind"])))},
    )
    AggregateTest(fixed).given(Awarded(Kind.GOLD)).when(Award(Kind.GOLD)).then_state(20)


@pytest.mark.parametrize(
    ("original", "decoded", "where"),
    [
        ({"a": [1, (2,)]}, {"a": [1, [2]]}, r"\['a'\]\[1\] is a tuple and comes back as a list"),
        ([1.0], [1], r"\[0\] is a float and comes back as a int"),
        ({"a": 1}, {"b": 1}, r"has the keys \['a'\] and comes back with \['b'\]"),
        ((1, 2), (1,), r"holds 2 items and comes back with 1"),
        (
            frozenset({Kind.GOLD}),
            frozenset({"gold"}),
            r"item <Kind\.GOLD: 'gold'> is a Kind and comes back as a str",
        ),
        (frozenset({1, 2}), frozenset({1}), r"holds 2 and comes back without it"),
        (Awarded(Kind.GOLD), Awarded("gold"), r"\.kind is a Kind and comes back as a str"),  # type: ignore[arg-type]
        (True, 1, r"is a bool and comes back as a int"),
        ("a", "b", r"is 'a' and comes back as 'b'"),
    ],
)
def test_a_round_trip_compares_types_as_well_as_values(
    original: Any, decoded: Any, where: str
) -> None:
    assert difference(original, original) is None
    found = difference(original, decoded)
    assert found is not None
    assert re.search(where, found), found


@dataclass(frozen=True)
class Noted:
    amount: int
    note: str = field(default="", compare=False)  # Not compared, and lost by its decoder.


def noted_evolve(state: int, event: Noted) -> int:
    return state + event.amount + len(event.note)


@pytest.mark.anyio
async def test_when_folds_the_events_as_a_replay_reads_them() -> None:
    noted: Aggregate[int, Deposit, Noted] = Aggregate(
        "noted",
        0,
        lambda state, command: [Noted(1, "a note")],
        noted_evolve,
        events={"Noted": EventType(Noted, decode=lambda data: Noted(data["amount"]))},
    )
    test = AggregateTest(noted).when(Deposit(1)).then(Noted(1))
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(noted, "1", Deposit(1))
        replayed = await runtime.state_at(noted, "1", version=1)
    test.then_state(replayed)
    assert replayed == 1


def test_a_second_when_is_refused_rather_than_mixed_with_the_first() -> None:
    test = AggregateTest(account).given(Opened("ada"), Deposited(50)).when(Withdraw(80))
    with pytest.raises(
        AssertionError,
        match=r"when\(Deposit\(amount=5\)\) after when\(Withdraw\(amount=80\)\): an AggregateTest "
        r"decides one command; give the events of earlier commands to \.given\(\.\.\.\)",
    ):
        test.when(Deposit(5))
    test.then_rejected("insufficient funds")  # The first command's outcome stands.


def test_past_events_after_the_command_are_refused_rather_than_folded_after_it() -> None:
    test = AggregateTest(account).given(Opened("ada")).when(Withdraw(80))
    with pytest.raises(
        AssertionError,
        match=r"^given\(Deposited\(amount=50\)\) after when\(Withdraw\(amount=80\)\): the "
        r"command was decided without these events; give the past events before the command",
    ):
        test.given(Deposited(50))
    with pytest.raises(
        AssertionError, match=r"^given_stored\('Deposited', 1, \{'amount': 50\}\) after when"
    ):
        test.given_stored("Deposited", 1, {"amount": 50})
    # Nothing was folded: the state is still the one the command was decided against.
    test.then_rejected("insufficient funds").then_state(Account("ada"))
