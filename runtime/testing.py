"""A test kit for aggregates (given / when / then) and a clock that tests move by hand.

::

    def test_withdraw_more_than_balance_is_rejected() -> None:
        (AggregateTest(account)
            .given(Opened("ada"), Deposited(50))
            .when(Withdraw(80))
            .then_rejected("insufficient funds"))

Every event given or decided is encoded as the journal encodes it and decoded as a replay
decodes it; it must come back equal and of the same types, field by field, so an event that
would not survive the journal fails the test here rather than in production. The state is
folded from the decoded events, as a replay folds them.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from journals import EventEncodingError, NewEvent, decode_data, encode_data, encode_event

from ._aggregate import Aggregate, is_event_sequence
from ._exceptions import CommandRejected
from ._snapshots import difference as _difference

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")

__all__ = ["AggregateTest", "ManualClock", "round_trip_event", "round_trip_state"]


def round_trip_event(aggregate: Aggregate[Any, Any, E], event: E) -> E:
    """Encode ``event`` as the journal does, decode it as a replay does; fail if it changed.

    The event is encoded by the journals' own ``encode_event``, from the data the runtime
    appends, so an event any journal refuses (a non-finite float, a value JSON cannot hold,
    too many bytes) fails the test with the journal's reason.
    """
    types, data = aggregate.event_columns([event])
    type_name = types[0]
    decoded = aggregate.decode_event(type_name, decode_data(_encode(event, type_name, data[0])))
    found = _difference(event, decoded, "event")
    if found is not None:
        if type(decoded) is not type(event) and type(decoded) in aggregate._type_names:
            # Deliberate: a decode that reads a retired type as another (a merge, a split).
            base, _, version = type_name.rpartition("/")
            name = base.removeprefix(f"{aggregate.name}.")
            fix = (
                f"its decode builds a {type(decoded).__qualname__}, as it reads a type merged "
                f"or split into others: give such history as stored, "
                f".given_stored({name!r}, {version}, data), or give the "
                f"{type(decoded).__qualname__} it stands for"
            )
        else:
            fix = "give its EventType a decode function that rebuilds it"
        raise AssertionError(
            f"event {event!r} comes back from the journal as {decoded!r} (stored as "
            f"{type_name!r}): {found}; {fix}"
        )
    return decoded


def _encode(event: Any, type_name: str, data: Any) -> bytes:
    try:
        encoded, _ = encode_event(0, NewEvent(type_name, data))
    except EventEncodingError as error:
        raise AssertionError(f"the journal refuses event {event!r:.200}: {error}") from None
    return encoded


def _evolve(aggregate: Aggregate[S, Any, E], state: S, event: E) -> S:
    """``evolve(state, event)``, failing if that changes what the journal would store.

    The runtime takes an event's data before ``evolve`` sees the event, and the journal
    encodes that data after: whatever ``evolve`` adds to the event or changes in it (an
    attribute it caches, a list it appends to) would be stored, and could differ from what
    the live state was evolved from, or not be readable at all.
    """
    types, data = aggregate.event_columns([event])
    before = _encode(event, types[0], data[0])
    if state is aggregate.initial:
        state = _evolve_initial(aggregate, event)
    else:
        state = aggregate.evolve(state, event)
    after = _encode(event, types[0], data[0])
    if after != before:
        raise AssertionError(
            f"evolve changed what event {event!r:.200} is stored as, from {before!r:.200} to "
            f"{after!r:.200}; the journal encodes an event after evolve has seen it, so evolve "
            f"must not change the event (nor the lists or dicts it holds)"
        )
    return state


def _comparable_copy(state: S) -> S | None:
    """A copy of ``state`` to find out later whether it changed, or None when there is no
    such copy (it cannot be copied, or its copy does not compare equal to it)."""
    try:
        kept = copy.deepcopy(state)
        if _difference(kept, state, "state") is None:
            return kept
    except Exception:
        pass
    return None


def _check_decide_left(
    aggregate: Aggregate[S, Any, Any], kept: S | None, state: S, command: Any
) -> None:
    """Fail if ``decide`` changed the state it was given (``kept`` is a copy from before)."""
    if kept is None:
        return
    changed = _difference(kept, state, "state")
    if changed is not None:
        raise AssertionError(
            f"decide of aggregate {aggregate.name!r} changed the state it was given, on "
            f"{command!r:.200} (against a copy from before: {changed}); after a rejection the "
            f"runtime keeps that state, and after an acceptance evolves the events into it, "
            f"so the entity in memory would differ from the fold of its events that it is "
            f"activated with. Change the state only in evolve"
        )


def _evolve_initial(aggregate: Aggregate[S, Any, E], event: E) -> S:
    """``evolve(initial, event)``, failing if that changes ``initial``, which every entity of
    a runtime starts from (a real run fails such an activation with ``InitialStateChanged``).

    ``evolve`` is given ``initial`` itself (it may tell it by identity) and compared with a
    copy from before; an ``initial`` that cannot be copied is not checked.
    """
    initial = aggregate.initial
    kept = _comparable_copy(initial)
    state = aggregate.evolve(initial, event)
    changed = None if kept is None else _difference(kept, initial, "initial")
    if changed is not None:
        raise AssertionError(
            f"evolve changed the initial state of aggregate {aggregate.name!r} in place, on "
            f"{event!r:.200} (against a copy from before: {changed}); every entity starts "
            f"from that one object, and the runtime refuses to activate entities once it has "
            f"changed (InitialStateChanged). Make evolve return a new state, or give "
            f"initial=None and let evolve make the entity's own state from its first event. "
            f"The initial state stays changed for the rest of this process"
        )
    return state


def _check_event_name(aggregate: Aggregate[Any, Any, Any], event_name: str, version: int) -> None:
    """Refuse, for ``given_stored``, a stored type name given where its event name goes
    (``"account.Deposited"``, ``"Deposited/1"``): replayed as is, the unknown type would
    advise registering that name with the aggregate. Any other unregistered name is left to
    the ``UnknownEventType`` that a replay raises."""
    prefix = f"{aggregate.name}."
    registered = {stored.removeprefix(prefix).rpartition("/")[0] for stored in aggregate.decoders}
    if event_name in registered:
        return
    bare = event_name.removeprefix(prefix).partition("/")[0]
    if bare in registered:
        raise ValueError(
            f"given_stored takes the event name as registered in events=, without the "
            f"aggregate's name or a version: given_stored({bare!r}, {version}, data), not "
            f"{event_name!r}"
        )


def round_trip_state(aggregate: Aggregate[S, Any, Any], state: S) -> S:
    """Encode ``state`` as a snapshot is stored, decode it as activation does; compare."""
    try:
        encoded = encode_data(aggregate.encode_state(state), "snapshot data")
    except EventEncodingError as error:
        raise AssertionError(
            f"the journal refuses state {state!r:.200} as a snapshot: {error}"
        ) from None
    decoded = aggregate.decode_state(decode_data(encoded))
    # As the runtime checks it: with the default decode_state and an encode_state of the
    # aggregate's own, the fields it leaves out come back as their defaults, as chosen.
    stored_fields = aggregate._default_encode_state or not aggregate._default_decode_state
    found = _difference(state, decoded, "state", stored_fields=stored_fields)
    if found is not None:
        raise AssertionError(
            f"state {state!r} comes back from a snapshot as {decoded!r}: {found}; fix the "
            f"aggregate's encode_state / decode_state"
        )
    return decoded


class AggregateTest(Generic[S, C, E]):
    """Given past events, when a command, then the expected events or rejection.

    One command per test: a second ``when`` is refused (its outcome would be mixed with the
    first's), as are past events given after ``when`` (the command was decided without them).

    ``snapshots``: whether ``when`` also checks that the state it ends with (once an event
    was given or decided) survives a snapshot (``round_trip_state``). None, the default,
    checks it for an aggregate with ``snapshot_every``; pass True for one whose runtime takes
    snapshots on passivation (``Runtime(snapshot_on_passivation=True)``)::

        AggregateTest(order, snapshots=True).given(Paid(10)).when(Pay(5)).then(Paid(5))
    """

    def __init__(self, aggregate: Aggregate[S, C, E], *, snapshots: bool | None = None) -> None:
        if snapshots is not None and not isinstance(snapshots, bool):
            raise ValueError(f"snapshots must be True, False or None, not {snapshots!r}")
        self.aggregate = aggregate
        self.state: S = aggregate.initial
        self.events: list[E] = []
        self.rejection: CommandRejected | None = None
        self._decided = False
        self._command: Any = None
        self._given = False
        self._snapshots = aggregate.snapshot_every is not None if snapshots is None else snapshots

    def given(self, *events: E) -> AggregateTest[S, C, E]:
        """Fold past ``events`` into the state (each round-tripped through the journal)."""
        if self._decided:
            raise self._past_after_when(f"given({', '.join(map(repr, events))})")
        for event in events:
            self.state = _evolve(
                self.aggregate, self.state, round_trip_event(self.aggregate, event)
            )
        self._given = self._given or bool(events)
        return self

    def given_stored(self, event_name: str, version: int, data: Any) -> AggregateTest[S, C, E]:
        """Fold an event as an older version of the code stored it: ``data``, the JSON data of
        version ``version`` of the event registered as ``event_name``, is read back as a
        replay reads it (through its upcasters and its ``decode``), then evolved.

        So a test can hold upcasters to events stored before a schema change::

            AggregateTest(account).given_stored("Deposited", 1, {"amount": 5}).when(...)

        A version the aggregate cannot read (no upcaster from it) raises the
        ``UnknownEventType`` that a replay would raise; a failing upcaster raises its error.
        """
        if self._decided:
            raise self._past_after_when(f"given_stored({event_name!r}, {version!r}, {data!r})")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a whole number >= 1, not {version!r}")
        _check_event_name(self.aggregate, event_name, version)
        type_name = f"{self.aggregate.name}.{event_name}/{version}"
        stored = decode_data(encode_data(data, f"stored data of {type_name!r}"))
        try:
            event = self.aggregate.decode_event(type_name, stored)
        except TypeError as error:
            self.aggregate.explain_decoding_failure(error, type_name, stored)
            raise
        self.state = _evolve(self.aggregate, self.state, event)
        self._given = True
        return self

    def when(self, command: C) -> AggregateTest[S, C, E]:
        """Decide on ``command``; a crash (any exception but a rejection) propagates.

        What ``decide`` returns is checked as the runtime checks it: anything but a list (or
        another sequence) of registered events is the crash it would be there, such as an
        ``InvalidDecision`` for a generator.
        """
        if self._decided:
            raise AssertionError(
                f"when({command!r:.100}) after when({self._command!r:.100}): an AggregateTest "
                f"decides one command; give the events of earlier commands to .given(...), or "
                f"start a new AggregateTest"
            )
        self._decided = True
        self._command = command
        kept = _comparable_copy(self.state)
        state = self.state  # itself, not a copy: decide may tell initial by identity
        try:
            events = self.aggregate.decide(state, command)
        except CommandRejected as rejection:
            _check_decide_left(self.aggregate, kept, state, command)
            self.rejection = rejection
            if self._snapshots and self._given:
                round_trip_state(self.aggregate, self.state)
            return self
        except Exception as error:
            self.aggregate.explain_crash(error, command, state, self._given)
            raise
        _check_decide_left(self.aggregate, kept, state, command)
        if events:
            # What the runtime appends with: it refuses here what the runtime refuses.
            self.aggregate.event_columns(events)
        elif not is_event_sequence(events):
            raise self.aggregate.invalid_decision(events)
        self.events = list(events)
        for event in self.events:
            # Folded as a replay reads it, as in given: what a restarted actor sees.
            decoded = round_trip_event(self.aggregate, event)
            self.state = _evolve(self.aggregate, self.state, decoded)
        if self._snapshots and (self.events or self._given):
            round_trip_state(self.aggregate, self.state)
        return self

    def then(self, *expected: E) -> AggregateTest[S, C, E]:
        """Assert the command was accepted and produced exactly ``expected``, in order."""
        if len(expected) == 1 and isinstance(expected[0], list | tuple):
            raise TypeError(
                f"then takes the expected events one by one, then(a, b) (or then(*events)), "
                f"not a {type(expected[0]).__name__} of them"
            )
        self._check_decided()
        if self.rejection is not None:
            raise AssertionError(
                f"expected events {list(expected)!r}, but the command was rejected: "
                f"{self.rejection.reason!r}"
            )
        if self.events != list(expected):
            raise AssertionError(
                f"expected events {list(expected)!r}, got {self.events!r}: "
                f"{_events_difference(list(expected), self.events)}"
            )
        return self

    def then_rejected(
        self,
        reason: str | re.Pattern[str] | None = None,
        *,
        kind: type[CommandRejected] = CommandRejected,
    ) -> AggregateTest[S, C, E]:
        """Assert the command was rejected (with ``reason``: the reason itself, or a regular
        expression that ``re.search`` finds in it, or text in it when it is no regular
        expression)."""
        if reason is not None and not isinstance(reason, str | re.Pattern):
            raise TypeError(
                f"then_rejected takes the reason as a str (a regular expression), not "
                f"{reason!r:.100}; for the kind of rejection pass kind=..."
            )
        if not (isinstance(kind, type) and issubclass(kind, CommandRejected)):
            raise TypeError(
                f"kind must be CommandRejected or a subclass of it (the class, not an "
                f"instance), not {kind!r:.100}"
            )
        self._check_decided()
        if self.rejection is None:
            raise AssertionError(f"expected a rejection, but the command produced {self.events!r}")
        if not isinstance(self.rejection, kind):
            raise AssertionError(f"expected a {kind.__name__}, got {self.rejection!r}")
        got = self.rejection.reason
        if reason is not None and not _reason_matches(reason, got):
            hint = ""
            if isinstance(reason, str) and reason in got:
                hint = f"; it holds {reason!r} as text: pass re.escape({reason!r})"
            raise AssertionError(f"expected a rejection matching {reason!r}, got {got!r}{hint}")
        return self

    def then_state(self, expected: S) -> AggregateTest[S, C, E]:
        """Assert the state after the given events and the command's events."""
        if self.state != expected:
            found = _fields_difference(expected, self.state, "state")
            raise AssertionError(
                f"expected state {expected!r}, got {self.state!r}" + (f": {found}" if found else "")
            )
        return self

    def _past_after_when(self, call: str) -> AssertionError:
        """The refusal of past events once the command is decided: it was decided without
        them, and folded after its events they would make a state no entity has."""
        return AssertionError(
            f"{call:.150} after when({self._command!r:.100}): the command was decided without "
            f"these events; give the past events before the command, "
            f"AggregateTest(aggregate).given(...).when(command)"
        )

    def _check_decided(self) -> None:
        if not self._decided:
            raise AssertionError("call .when(command) before .then...(...)")


def _reason_matches(reason: str | re.Pattern[str], got: str) -> bool:
    """Whether a rejection's reason ``got`` is ``reason``, or ``reason`` as a regular expression
    finds it; a ``reason`` that is no regular expression (``"funds (balance"``) is searched for
    as text. The reason itself always matches: ``"no funds (balance 0)"`` is no pattern of
    itself."""
    if reason == got:
        return True
    try:
        return re.search(reason, got) is not None
    except re.error:
        return isinstance(reason, str) and reason in got


def _events_difference(expected: list[Any], got: list[Any]) -> str:
    """Where ``got`` first differs from ``expected``, for a failed ``then``."""
    for index, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want == have:
            continue
        if isinstance(want, type):
            return (
                f"event {index} is expected to be the class {want.__qualname__} itself; then "
                f"takes events, such as {want.__qualname__}(...)"
            )
        if type(want) is not type(have):
            return (
                f"event {index} is a {type(have).__qualname__}, expected a "
                f"{type(want).__qualname__}"
            )
        found = _fields_difference(want, have, f"event {index}")
        return f"event {index} ({type(have).__qualname__}) differs" + (
            f": {found}" if found else ""
        )
    return f"got {len(got)} event{'' if len(got) == 1 else 's'}, expected {len(expected)}"


def _fields_difference(expected: Any, got: Any, root: str) -> str:
    """Where ``got`` differs from ``expected``, for a failed ``then`` or ``then_state``: each
    field that differs, down to the item or nested field (``lines[3].quantity is 2, expected
    1``), so that a difference deep in a long value is shown and not cut off with its repr.
    "" when there is nothing to say beyond the two values (instances of different classes).
    ``root`` names the value when it is no dataclass (``state['balance'] is ...``)."""
    if type(expected) is not type(got):
        return ""
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        return "; ".join(_dataclass_differences(expected, got, ""))
    return _where(expected, got, root)


def _dataclass_differences(expected: Any, got: Any, path: str) -> list[str]:
    """One description per compared field of two instances of one dataclass that differs."""
    found = []
    for each in dataclasses.fields(expected):
        if not each.compare:
            continue
        want, have = getattr(expected, each.name), getattr(got, each.name)
        if want != have:
            found.append(_where(want, have, f"{path}.{each.name}" if path else each.name))
    return found


def _where(expected: Any, got: Any, path: str) -> str:
    """Where ``got``, which is not equal to ``expected``, first differs from it: the first
    item, key or field that differs, followed down while both are of one type."""
    if type(expected) is type(got):
        if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
            found = _dataclass_differences(expected, got, path)
            if found:
                return "; ".join(found)
        elif isinstance(expected, list | tuple):
            for index, (want, have) in enumerate(zip(expected, got, strict=False)):
                if want != have:
                    where = _where(want, have, f"{path}[{index}]")
                    if len(expected) == len(got):
                        return where
                    return f"{where} ({path} holds {len(got)} items, expected {len(expected)})"
            if len(expected) != len(got):
                shorter = min(len(expected), len(got))
                first = (
                    f"{path}[{shorter}] is missing, expected {expected[shorter]!r:.200}"
                    if len(expected) > shorter
                    else f"{path}[{shorter}] is {got[shorter]!r:.200}, not expected"
                )
                return f"{path} holds {len(got)} items, expected {len(expected)}: {first}"
        elif isinstance(expected, dict):
            missing = [key for key in expected if key not in got]
            extra = [key for key in got if key not in expected]
            if missing or extra:
                keys = [f"lacks the keys {missing!r:.200}"] if missing else []
                keys += [f"has the keys {extra!r:.200}, not expected"] if extra else []
                return f"{path} {' and '.join(keys)}"
            for key, want in expected.items():
                if want != got[key]:
                    return _where(want, got[key], f"{path}[{key!r:.100}]")
        elif isinstance(expected, str) and max(len(expected), len(got)) > 100:
            # Too long to show whole: where they part, with a little of what comes before.
            index = next(
                (at for at, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                min(len(expected), len(got)),
            )
            start = max(index - 20, 0)
            return (
                f"{path} differs from character {index} on: ...{got[start : index + 60]!r}, "
                f"expected ...{expected[start : index + 60]!r} ({len(got)} characters, "
                f"expected {len(expected)})"
            )
    return f"{path} is {got!r:.200}, expected {expected!r:.200}"


class ManualClock:
    """A clock for tests: time moves only by ``advance`` and ``pass_time`` (or by sleeping,
    with ``autojump``); neither takes a step back.

    ``ManualClock(autojump=True)``: every ``sleep`` moves time forward by its duration at
    once, like trio's ``MockClock(autojump_threshold=0)``; ``sleeps`` records each duration.
    Without autojump, sleepers wait until ``advance`` moves time past their deadline. Use
    that mode with ``Runtime(passivate_after_s=...)``: the sweeper sleeps in a loop, and with
    autojump it would race time forward. ``advance`` moves time at once, so a task that
    sleeps in a loop (the sweeper) wakes once however far it goes; ``await pass_time(s)``
    lets time pass as it would, deadline by deadline.
    """

    def __init__(self, start: float = 0.0, *, autojump: bool = False) -> None:
        self._now = start
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.autojump:
            self._now += max(seconds, 0.0)
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (self._now + seconds, event)
        self._sleepers.append(entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: advance has not taken it out
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come.

        A negative or NaN step is refused: the runtime's clock is monotonic, and its
        deadlines, backoffs and idle times count on it.
        """
        if not seconds >= 0:
            raise ValueError(
                f"ManualClock.advance takes seconds >= 0, not {seconds!r}: "
                f"a monotonic clock does not go back"
            )
        self._now += seconds
        due = [entry for entry in self._sleepers if entry[0] <= self._now]
        self._sleepers = [entry for entry in self._sleepers if entry[0] > self._now]
        for _, event in due:
            event.set()

    async def pass_time(self, seconds: float) -> None:
        """Move time forward by ``seconds`` to each sleeper's deadline in turn, letting the
        tasks woken at each run until every task waits (``anyio.wait_all_tasks_blocked``).

        A task that sleeps in a loop then sees every deadline it would have seen while that
        much time passed: ``Runtime(passivate_after_s=300)``'s sweeper passivates an actor
        left idle through ``await clock.pass_time(400)``, where ``advance(400)`` wakes it once.
        A task that sleeps for 0 seconds in a loop would keep it going for ever.
        """
        if not seconds >= 0:
            raise ValueError(
                f"ManualClock.pass_time takes seconds >= 0, not {seconds!r}: "
                f"a monotonic clock does not go back"
            )
        end = self._now + seconds
        await anyio.wait_all_tasks_blocked()
        while True:
            due = [deadline for deadline, _ in self._sleepers if deadline <= end]
            if not due:
                break
            self.advance(max(min(due) - self._now, 0.0))
            await anyio.wait_all_tasks_blocked()
        self.advance(end - self._now)
        await anyio.wait_all_tasks_blocked()

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock now."""
        return len(self._sleepers)
