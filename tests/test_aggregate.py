"""Authoring aggregates: stable names, registration checks, upcasting, unknown types."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime import Aggregate, EventType, UnknownEventType, UnregisteredEvent
from runtime._event_forms import fast_construct
from runtime._exceptions import InvalidDecision

from .test_runtime_bank import EVENTS, Account, Deposited, Opened, account
from .test_runtime_bank import decide as bank_decide
from .test_runtime_bank import evolve as bank_evolve

# The bank's functions, reused with other event classes for naming tests.
decide: Any = bank_decide
evolve: Any = bank_evolve


@dataclass(frozen=True)
class DepositedV2:
    amount: int
    currency: str


@dataclass(frozen=True)
class NotRegistered:
    value: int


def test_stream_ids_and_type_names_are_stable_strings() -> None:
    assert account.stream_id("42") == "account-42"
    assert account.event_type_name(Deposited(1)) == "account.Deposited/1"
    assert [e.type for e in account.to_new_events([Opened("a"), Deposited(2)])] == [
        "account.Opened/1",
        "account.Deposited/1",
    ]


def test_renaming_a_class_keeps_stored_events_readable() -> None:
    @dataclass(frozen=True)
    class MoneyIn:  # the class once called Deposited, under its stable name
        amount: int

    renamed = Aggregate("account", Account(), decide, evolve, events={"Deposited": MoneyIn})
    assert renamed.decode_event("account.Deposited/1", {"amount": 5}) == MoneyIn(5)


def test_older_versions_are_upcast_and_unknown_ones_refused() -> None:
    def add_currency(data: Any) -> Any:
        return {**data, "currency": "EUR"}

    upgraded = Aggregate(
        "account",
        Account(),
        decide,
        evolve,
        events={"Deposited": EventType(DepositedV2, version=2, upcasters={1: add_currency})},
    )
    assert upgraded.event_type_name(DepositedV2(1, "USD")) == "account.Deposited/2"
    assert upgraded.decode_event("account.Deposited/1", {"amount": 5}) == DepositedV2(5, "EUR")
    assert upgraded.decode_event("account.Deposited/2", {"amount": 5, "currency": "USD"}) == (
        DepositedV2(5, "USD")
    )
    with pytest.raises(UnknownEventType, match=r"'account\.Deposited/3' is not registered"):
        upgraded.decode_event("account.Deposited/3", {"amount": 5})
    with pytest.raises(UnknownEventType, match=r"account\.Withdrawn/1"):
        upgraded.decode_event("account.Withdrawn/1", {"amount": 5})


def test_an_unknown_stored_type_says_why_it_cannot_be_read() -> None:
    # Each reason has its own remedy; a newer version cannot be upcast, only read by newer code.
    upgraded = Aggregate(
        "account",
        Account(),
        decide,
        evolve,
        events={"Deposited": EventType(DepositedV2, version=3, upcasters={2: lambda d: d})},
    )
    with pytest.raises(UnknownEventType) as newer:
        upgraded.decode_event("account.Deposited/4", {"amount": 5})
    assert str(newer.value) == (
        "stored event type 'account.Deposited/4' is not registered with aggregate 'account': "
        "it is version 4 of event 'Deposited', and this code registers version 3, so it was "
        "written by a later version of the application; an event is never read as an older "
        "schema. Run that later version (or one that registers version 4 or above, with its "
        "class and upcasters)"
    )
    with pytest.raises(UnknownEventType) as older:
        upgraded.decode_event("account.Deposited/1", {"amount": 5})
    assert str(older.value) == (
        "stored event type 'account.Deposited/1' is not registered with aggregate 'account': "
        "it is version 1 of event 'Deposited', registered at version 3, and no chain of "
        "upcasters leads from it (known: account.Deposited/2, account.Deposited/3); give "
        "EventType(..., version=3) an upcaster for each of versions 1 to 2 (upcasters[n] reads "
        "version n and answers version n + 1)"
    )
    with pytest.raises(UnknownEventType) as retired:
        upgraded.decode_event("account.Opened/1", {"owner": "ada"})
    assert str(retired.value) == (
        "stored event type 'account.Opened/1' is not registered with aggregate 'account' "
        "(known: account.Deposited/2, account.Deposited/3); register the event name 'Opened', "
        "keeping an event type registered for as long as the journal holds events of it (one "
        "that decide no longer returns, too)"
    )


@pytest.mark.parametrize("version", ["\u00b2", "03", "0", "", "x"])
def test_a_stored_type_whose_version_this_code_never_writes_is_unknown(version: str) -> None:
    # Written by other code, or changed by hand: not read as a version it does not name.
    upgraded = Aggregate(
        "account", Account(), decide, evolve, events={"Deposited": EventType(DepositedV2)}
    )
    with pytest.raises(UnknownEventType) as caught:
        upgraded.decode_event(f"account.Deposited/{version}", {"amount": 5})
    assert str(caught.value) == (
        f"stored event type 'account.Deposited/{version}' is not registered with aggregate "
        f"'account': its version {version!r} is not one that eventfold writes (a whole number "
        f"from 1, without leading zeros), and no registration reads it (known: "
        f"account.Deposited/1); the event was written by other code or changed since. The "
        f"journal's read(stream_id) gives it as stored"
    )


def test_a_version_without_a_path_up_is_unknown_rather_than_misread() -> None:
    no_path = Aggregate(
        "account",
        Account(),
        decide,
        evolve,
        events={"Deposited": EventType(DepositedV2, version=3, upcasters={2: lambda d: d})},
    )
    with pytest.raises(UnknownEventType):
        no_path.decode_event("account.Deposited/1", {"amount": 5})
    assert no_path.decode_event("account.Deposited/2", {"amount": 1, "currency": "X"}) == (
        DepositedV2(1, "X")
    )


def test_fold_evolves_the_state_through_the_events_in_their_order() -> None:
    events: list[Any] = [Opened("ada"), Deposited(5), Opened("bob")]
    assert account.fold(Account(), events) == Account("bob", 5, 1)
    assert account.fold(Account(), []) == Account()


def test_an_unregistered_event_is_named() -> None:
    mixed: list[Any] = [Deposited(1), NotRegistered(1)]
    with pytest.raises(UnregisteredEvent, match="NotRegistered is not an event type"):
        account.to_new_events(mixed)


@pytest.mark.parametrize(
    ("name", "events", "message"),
    [
        ("account-x", EVENTS, "aggregate name"),
        ("", EVENTS, "aggregate name"),
        ("account", {}, "at least one event type"),
        ("account", {"Bad/Name": Opened}, "event name"),
        (
            "account",
            {"A": Opened, "B": Opened},
            "event class Opened is registered twice in aggregate 'account', as 'A' and as 'B'",
        ),
        (
            "account",
            {"A": int},
            r"event 'A' of aggregate 'account': event class int must be a dataclass, .*; "
            r"decorate it with @dataclass\(frozen=True\)$",
        ),
        ("account", {"A": EventType(Opened, version=0)}, "versions start at 1"),
    ],
)
def test_definitions_are_checked(name: str, events: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Aggregate(name, Account(), decide, evolve, events=events)


def test_snapshot_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="snapshot_every"):
        Aggregate("account", Account(), decide, evolve, events=EVENTS, snapshot_every=0)


def test_default_state_codec_rebuilds_a_dataclass_state() -> None:
    state = Account("ada", 5, 1)
    assert account.decode_state({"owner": "ada", "balance": 5, "deposits": 1}) == state
    assert account.encode_state(state) is state


@dataclass(frozen=True, slots=True)
class _Line:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class _Ordered:
    order: str
    lines: tuple[_Line, ...]
    at: datetime
    note: str | None = None
    _internal: int = 0
    priority: float = field(default=1.0, init=False)


@dataclass(frozen=True)
class _Unslotted:
    order: str


_ORDERS: Aggregate[None, Any, Any] = Aggregate(
    "order",
    None,
    lambda state, command: [],
    lambda state, event: state,
    events={
        # Its init=False field is stored, so registering it needs decode= (never run here).
        "Ordered": EventType(_Ordered, decode=lambda data: data),
        "Unslotted": _Unslotted,
    },
)


@given(
    order=st.text(),
    lines=st.lists(st.builds(_Line, st.text(), st.integers(-(2**63), 2**63 - 1)), max_size=3),
    at=st.datetimes(timezones=st.just(UTC)),
    note=st.none() | st.text(),
    internal=st.integers(),
)
def test_the_journal_form_of_an_event_encodes_as_orjson_encodes_the_event(
    order: str, lines: list[_Line], at: datetime, note: str | None, internal: int
) -> None:
    event = _Ordered(order, tuple(lines), at, note, internal)
    unslotted = _Unslotted(order)
    new_events = _ORDERS.to_new_events([event, unslotted])
    assert [new_event.type for new_event in new_events] == ["order.Ordered/1", "order.Unslotted/1"]
    assert orjson.dumps(new_events[0].data) == orjson.dumps(event)
    assert new_events[1].data is unslotted  # orjson encodes these fast itself
    assert _ORDERS.decode_event("order.Unslotted/1", orjson.loads(orjson.dumps(unslotted))) == (
        unslotted
    )


@dataclass(frozen=True, slots=True)
class _Shipped:
    order: str
    lines: list[Any]
    carrier: str = "post"


@dataclass(slots=True)
class _Mutable:
    count: int
    UNIT: ClassVar[str] = "pieces"  # Not a field: the fast builder still applies.


@dataclass(frozen=True, slots=True)
class _Express(_Shipped):
    hours: int = 24


@dataclass(frozen=True, slots=True)
class _Checked:
    amount: int

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True)
class _Derived:
    amount: int
    _doubled: int = field(init=False, default=0)  # Not stored: no decode= needed.


@dataclass(frozen=True)
class _Plain:
    amount: int


@dataclass(frozen=True, slots=True)
class _InitOnly:
    amount: int
    scale: InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        object.__setattr__(self, "amount", self.amount * scale)


@dataclass(frozen=True, slots=True, init=False)
class _OwnInit:
    amount: int

    def __init__(self, amount: int) -> None:  # Its own, with the fields' signature.
        object.__setattr__(self, "amount", abs(amount))


@dataclass(frozen=True, slots=True)
class _OwnNew:
    amount: int

    def __new__(cls, amount: int) -> _OwnNew:
        if amount < 0:
            raise ValueError("negative")
        return object.__new__(cls)


def _outcome(build: Any, data: Any) -> Any:
    try:
        return ("built", build(data))
    except Exception as error:  # the same kind of failure is what is compared
        return ("raised", type(error))


_DATA = st.one_of(
    st.dictionaries(
        st.sampled_from(["order", "lines", "carrier", "hours", "count", "other"]),
        st.one_of(st.integers(), st.text(), st.lists(st.integers(), max_size=2)),
    ),
    st.lists(st.integers(), max_size=2),
    st.none(),
)


@pytest.mark.parametrize("cls", [_Shipped, _Mutable, _Express])
@given(data=_DATA)
def test_the_fast_builder_builds_what_the_class_builds_from_the_same_data(
    cls: type[Any], data: Any
) -> None:
    aggregate: Aggregate[None, Any, Any] = Aggregate(
        "fast", None, decide, evolve, events={"Happened": cls}
    )
    build = aggregate.decoders["fast.Happened/1"]
    assert fast_construct(cls) is not None  # the fast builder is in use
    assert _outcome(build, data) == _outcome(lambda value: cls(**value), data)


@pytest.mark.parametrize("cls", [_Checked, _Derived, _Plain, _InitOnly, _OwnInit, _OwnNew])
def test_classes_that_do_more_on_construction_are_built_by_calling_them(cls: type[Any]) -> None:
    aggregate: Aggregate[None, Any, Any] = Aggregate(
        "plain", None, decide, evolve, events={"Happened": cls}
    )
    assert fast_construct(cls) is None
    assert aggregate.decode_event("plain.Happened/1", {"amount": 3}) == cls(amount=3)
    if cls in (_Checked, _OwnNew):
        with pytest.raises(ValueError, match="negative"):
            aggregate.decode_event("plain.Happened/1", {"amount": -1})
    if cls is _OwnInit:  # Its own __init__ ran.
        assert aggregate.decode_event("plain.Happened/1", {"amount": -3}).amount == 3
    if cls is _InitOnly:  # Its __post_init__ ran with the init-only value.
        assert aggregate.decode_event("plain.Happened/1", {"amount": 3, "scale": 2}).amount == 6


def test_events_given_as_a_list_are_refused_with_the_mapping_to_write() -> None:
    with pytest.raises(
        TypeError,
        match=r"events of aggregate 'account' must be a mapping from the stored event name to "
        r"the event class, not a list: events=\{'Opened': Opened, 'Deposited': Deposited\}",
    ):
        Aggregate("account", Account(), decide, evolve, events=[Opened, Deposited])  # type: ignore[arg-type]


def test_one_event_instead_of_a_list_is_an_invalid_decision() -> None:
    lone: Any = Deposited(1)
    with pytest.raises(
        InvalidDecision, match=r"decide of aggregate 'account' returned a Deposited"
    ) as raised:
        account.event_columns(lone)
    assert isinstance(raised.value, TypeError)
    assert raised.value.returned == lone
    with pytest.raises(InvalidDecision, match="must return a list of events"):
        account.event_columns(event for event in [Deposited(1)])  # type: ignore[arg-type]
    types, _ = account.event_columns((Deposited(1), Deposited(2)))  # any sequence will do
    assert types == ["account.Deposited/1", "account.Deposited/1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Deposited", r"'Deposited' \(a str\).*the class itself, not its name: .*'Deposited'"),
        (Deposited(1), r"Deposited\(amount=1\) \(a Deposited\).*its class, not an instance"),
        (EventType("Deposited"), r"'Deposited' \(a str\)"),  # type: ignore[arg-type]
        (7, r"7 \(a int\).*register the event class"),
    ],
    ids=["name", "instance", "event-type-of-a-name", "number"],
)
def test_an_event_type_that_is_not_a_class_is_a_type_error_saying_what_to_pass(
    spec: Any, message: str
) -> None:
    with pytest.raises(
        TypeError, match=r"event 'Deposited' of aggregate 'account' is registered as " + message
    ):
        Aggregate("account", Account(), decide, evolve, events={"Deposited": spec})


@pytest.mark.parametrize(
    ("version", "keys", "valid"),
    [
        (2, [2], r"1"),
        (3, [1, 2, 3], r"1, 2"),
        (2, [0, 1], r"1"),
        (1, [1], r"none"),
        (2, ["1"], "1"),
    ],
)
def test_an_upcaster_for_a_version_it_cannot_apply_to_is_refused(
    version: int, keys: list[Any], valid: str
) -> None:
    upcasters = {key: lambda data: data for key in keys}
    with pytest.raises(
        ValueError,
        match=r"event 'Deposited' of aggregate 'account' has version "
        + str(version)
        + r" and upcasters for .*; upcasters\[n\] turns version n into n \+ 1, so the keys "
        r"can only be " + valid,
    ):
        Aggregate(
            "account",
            Account(),
            decide,
            evolve,
            events={"Deposited": EventType(DepositedV2, version=version, upcasters=upcasters)},
        )


@pytest.mark.parametrize("version", [1.5, "2", True, None])
def test_an_event_version_that_is_no_whole_number_is_refused(version: Any) -> None:
    with pytest.raises(TypeError, match=r"event 'Deposited' of aggregate 'account': the version"):
        Aggregate(
            "account",
            Account(),
            decide,
            evolve,
            events={"Deposited": EventType(DepositedV2, version=version)},
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            EventType(DepositedV2, version=2, upcasters=[lambda data: data]),  # type: ignore[arg-type]
            r"upcasters must be a mapping from a stored version to the function that turns its "
            r"data into the data of the next version, not a list: upcasters=\{1: ",
        ),
        (
            EventType(DepositedV2, version=2, upcasters={1: "add_currency"}),  # type: ignore[dict-item]
            r"upcasters\[1\] is 'add_currency', not a function",
        ),
        (
            EventType(DepositedV2, decode="DepositedV2"),  # type: ignore[arg-type]
            r"decode is 'DepositedV2', not a function; .* DepositedV2\(\*\*data\)",
        ),
    ],
    ids=["upcasters-a-list", "upcaster-not-callable", "decode-not-callable"],
)
def test_upcasters_and_decode_that_a_replay_could_not_call_are_refused(
    spec: EventType[Any], message: str
) -> None:
    with pytest.raises(TypeError, match=r"event 'Deposited' of aggregate 'account': " + message):
        Aggregate("account", Account(), decide, evolve, events={"Deposited": spec})


@dataclass(frozen=True)
class _Computed:
    amount: int
    fee: int = field(init=False)
    _rounded: int = field(init=False, default=0)  # Not stored: a replay need not pass it.

    def __post_init__(self) -> None:
        object.__setattr__(self, "fee", self.amount // 10)


def test_an_event_with_a_stored_init_false_field_needs_a_decode_function() -> None:
    with pytest.raises(
        ValueError,
        match=r"event 'Charged' of aggregate 'account': _Computed has fields with init=False "
        r"\('fee'\); .* Make each a property \(computed, not stored\), or give "
        r"EventType\(_Computed, decode=...\)",
    ):
        Aggregate("account", Account(), decide, evolve, events={"Charged": _Computed})

    def decode(data: Any) -> _Computed:
        return _Computed(data["amount"])

    with_decode: Aggregate[Any, Any, Any] = Aggregate(
        "account",
        Account(),
        decide,
        evolve,
        events={"Charged": EventType(_Computed, decode=decode)},
    )
    [new_event] = with_decode.to_new_events([_Computed(50)])
    stored = orjson.loads(orjson.dumps(new_event.data))
    assert stored == {"amount": 50, "fee": 5}  # Every field (but "_" ones), init=False too.
    assert with_decode.decode_event("account.Charged/1", stored) == _Computed(50)


@dataclass(frozen=True)
class _Sourced:
    amount: int
    _source: str  # Not stored, and no default: a replay could not build the event.
    _note: str = ""  # Not stored: a replay builds the event with the default.


@dataclass(frozen=True)
class _Scaled:
    amount: int
    factor: InitVar[int]  # Not a field, so not stored: a replay could not pass it.

    def __post_init__(self, factor: int) -> None:
        object.__setattr__(self, "amount", self.amount * factor)


def test_an_event_with_an_unstored_field_without_a_default_needs_a_decode_function() -> None:
    with pytest.raises(
        ValueError,
        match=r"event 'Sourced' of aggregate 'account': _Sourced\(\.\.\.\) requires '_source', "
        r"which an event's stored data does not hold .* Make each a field whose name does not "
        r"start with '_' to store it, give it a default .*, or give EventType\(_Sourced, "
        r"decode=...\)",
    ):
        Aggregate("account", Account(), decide, evolve, events={"Sourced": _Sourced})
    with pytest.raises(ValueError, match=r"_Scaled\(\.\.\.\) requires 'factor', which"):
        Aggregate("account", Account(), decide, evolve, events={"Scaled": _Scaled})

    def decode(data: Any) -> _Sourced:
        return _Sourced(data["amount"], "replay")

    with_decode: Aggregate[Any, Any, Any] = Aggregate(
        "account", Account(), decide, evolve, events={"Sourced": EventType(_Sourced, decode=decode)}
    )
    [new_event] = with_decode.to_new_events([_Sourced(5, "web", "x")])
    stored = orjson.loads(orjson.dumps(new_event.data))
    assert stored == {"amount": 5}
    assert with_decode.decode_event("account.Sourced/1", stored) == _Sourced(5, "replay")


@pytest.mark.parametrize("every", [True, 1.5, "10", 0, -1])
def test_snapshot_every_must_be_a_whole_number_of_at_least_one(every: Any) -> None:
    with pytest.raises(
        ValueError, match=r"snapshot_every must be a whole number of at least 1 or None, not "
    ):
        Aggregate("account", Account(), decide, evolve, events=EVENTS, snapshot_every=every)
    assert Aggregate("account", Account(), decide, evolve, events=EVENTS).snapshot_every is None


@pytest.mark.parametrize("schema", [True, 1.5, "2", None])
def test_snapshot_schema_must_be_a_whole_number(schema: Any) -> None:
    with pytest.raises(TypeError, match=r"snapshot_schema of aggregate 'account' must be an int"):
        Aggregate("account", Account(), decide, evolve, events=EVENTS, snapshot_schema=schema)


@pytest.mark.parametrize("name", [5, None, b"account"])
def test_a_name_that_is_no_str_is_a_type_error(name: Any) -> None:
    with pytest.raises(TypeError, match=r"the name of an aggregate must be a str .*, not a "):
        Aggregate(name, Account(), decide, evolve, events=EVENTS)


@pytest.mark.parametrize(
    "returned",
    [
        {Deposited(1): 1},
        {0: Deposited(1)},
        {"amount": 1},
        {Deposited(1): 1, Deposited(2): 2},
        {Deposited(1), Deposited(2)},
        frozenset({Deposited(1)}),
        {Deposited(1): 1}.keys(),
        "ab",
        "a",
        b"ab",
    ],
    ids=repr,
)
def test_a_mapping_a_set_or_a_string_is_an_invalid_decision(returned: Any) -> None:
    with pytest.raises(InvalidDecision, match=r"returned a .*; it must return a list of events"):
        account.event_columns(returned)
