"""Authoring aggregates: initial state, ``decide``, ``evolve`` and the registered event types."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from journals import NewEvent

from ._event_decoding import check_decoding, stored_data_note
from ._event_forms import construct, fast_construct, json_form
from ._exceptions import InvalidDecision, UnregisteredEvent
from ._functions import check_function
from ._initial import initial_copy
from ._settings import check_bound
from ._state_decoding import default_decode_state
from ._unknown_types import unknown_event_type

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_EMPTY: Mapping[int, Callable[[Any], Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class EventType(Generic[E]):
    """An event class with its schema version and how to read older versions.

    ``upcasters[n]`` turns the JSON data of version ``n`` into the data of version ``n + 1``;
    stored events of an older version pass through every step up to ``version``, so the keys
    are versions 1 to ``version - 1`` (any other is refused: it could never run). ``decode``
    builds the event from its (upcast) JSON data; the default is ``cls(**data)``. Use it for
    events with nested dataclasses, tuples or other values JSON does not give back as is::

        events={"Deposited": EventType(Deposited, version=2, upcasters={1: add_currency})}
    """

    cls: type[E]
    version: int = 1
    upcasters: Mapping[int, Callable[[Any], Any]] = field(default_factory=lambda: _EMPTY)
    decode: Callable[[Any], E] | None = None


@dataclass(frozen=True, slots=True)
class _Decoder(Generic[E]):
    build: Callable[[Any], E]
    steps: tuple[Callable[[Any], Any], ...]

    def __call__(self, data: Any) -> E:
        for step in self.steps:
            data = step(data)
        return self.build(data)


class Aggregate(Generic[S, C, E]):
    """One kind of entity: its initial state, how it decides and how events evolve it.

    ``decide(state, command)`` returns the list of events the command causes (possibly
    empty) or raises ``CommandRejected``; ``evolve(state, event)`` returns the next state.
    Both are pure and synchronous. An immutable state (a frozen dataclass) is simplest; an
    ``evolve`` that changes the state in place must never change ``initial``, which every
    entity starts from (give ``initial=None`` and let the first event make the entity's own
    state): an ``initial`` that can be changed is compared with a copy of it when an entity is
    activated, and one found changed fails the activation with ``InitialStateChanged``.

    ``name`` and the keys of ``events`` are the stable names stored in the journal: an event is
    stored as ``"<name>.<event name>/<version>"`` (for example ``"account.Deposited/1"``) and
    an entity's stream is ``"<name>-<entity id>"``. Renaming a Python class changes neither.

    Snapshots: with ``snapshot_every=N`` the runtime stores the state every N events.
    ``encode_state`` turns the state into JSON-compatible data (default: the state itself;
    dataclasses are encoded natively), ``decode_state`` turns it back (default for a
    dataclass state: ``type(initial)(**data)``, refusing data whose keys are not the state's
    fields when ``encode_state`` is the default, which stores them all). Bump
    ``snapshot_schema`` whenever the state's shape, what ``encode_state`` stores or what the
    events fold into changes: snapshots of another schema are ignored (the entity is replayed
    in full).
    """

    __slots__ = (
        "_default_decode_state",
        "_default_encode_state",
        "_initial_copy",
        "_json_forms",
        "_plain_types",
        "_stream_prefix",
        "_type_names",
        "decide",
        "decode_state",
        "decoders",
        "encode_state",
        "evolve",
        "initial",
        "name",
        "snapshot_every",
        "snapshot_schema",
    )

    def __init__(
        self,
        name: str,
        initial: S,
        decide: Callable[[S, C], Sequence[E]],
        evolve: Callable[[S, E], S],
        *,
        # Any, not E: E is inferred from decide and evolve alone (mypy would join classes of
        # one constructor signature into a callable returning object, and E with them).
        events: Mapping[str, type[Any] | EventType[Any]],
        snapshot_every: int | None = None,
        snapshot_schema: int = 1,
        encode_state: Callable[[S], Any] | None = None,
        decode_state: Callable[[Any], S] | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(
                f"the name of an aggregate must be a str (it prefixes stream ids and event type "
                f"names), not a {type(name).__name__} ({name!r:.100}): Aggregate('account', ...)"
            )
        if not _NAME.match(name):
            raise ValueError(
                f"aggregate name {name!r} must start with a letter or '_' and hold only "
                f"letters, digits, '_' and '.' (it prefixes stream ids and event type names)"
            )
        if snapshot_every is not None:
            snapshot_every = check_bound("snapshot_every", snapshot_every, or_none=True)
        if isinstance(snapshot_schema, bool) or not isinstance(snapshot_schema, int):
            raise TypeError(
                f"snapshot_schema of aggregate {name!r} must be an int (bump it when the "
                f"state's shape changes), not {snapshot_schema!r:.100}"
            )
        if isinstance(initial, type) and dataclasses.is_dataclass(initial):
            raise TypeError(
                f"the initial state of aggregate {name!r} is the class {initial.__qualname__}; "
                f"give an instance of it: Aggregate({name!r}, {initial.__qualname__}(), ...)"
            )
        for role, function in (("decide", decide), ("evolve", evolve)):
            check_function(name, role, function)
        for role, given in (("encode_state", encode_state), ("decode_state", decode_state)):
            if given is not None:
                check_function(name, role, given)
        if not isinstance(events, Mapping):
            raise TypeError(_events_not_a_mapping(name, events))
        if not events:
            raise ValueError(f"aggregate {name!r} must register at least one event type")
        self.name = name
        self.initial = initial
        # Compared with initial at each activation, when initial can be changed (_initial).
        self._initial_copy = initial_copy(initial)
        self.decide = decide
        self.evolve = evolve
        self.snapshot_every = snapshot_every
        self.snapshot_schema = snapshot_schema
        self.encode_state: Callable[[S], Any] = encode_state or (lambda state: state)
        # What an encode_state of the user's leaves out is filled with its default, as chosen.
        self.decode_state: Callable[[Any], S] = decode_state or default_decode_state(
            initial, check_keys=encode_state is None
        )
        # The default rebuilds a dataclass state from its JSON form, which may lose types (a
        # tuple, an enum): the runtime checks such snapshots before it stores them.
        self._default_decode_state = decode_state is None
        self._default_encode_state = encode_state is None
        self._stream_prefix = f"{name}-"
        self._type_names: dict[type[Any], str] = {}
        self._json_forms: dict[type[Any], Callable[[Any], Any]] = {}
        # Stored type name -> class, for the types read as cls(**data) without an upcaster
        # or a decode: when such data is refused, the class has changed (stored_data_note).
        self._plain_types: dict[str, type[Any]] = {}
        # Stored type name -> decoder from JSON data (upcasting included); read by replays.
        self.decoders: dict[str, Callable[[Any], E]] = {}
        for event_name, spec in events.items():
            self._register(event_name, spec if isinstance(spec, EventType) else EventType(spec))

    def _register(self, event_name: str, spec: EventType[E]) -> None:
        if not _NAME.match(event_name):
            raise ValueError(
                f"event name {event_name!r} of aggregate {self.name!r} must start with a letter "
                f"or '_' and hold only letters, digits, '_' and '.'"
            )
        if not isinstance(spec.cls, type):
            raise TypeError(_not_a_class(self.name, event_name, spec.cls))
        if not dataclasses.is_dataclass(spec.cls):
            raise ValueError(
                f"event {event_name!r} of aggregate {self.name!r}: event class "
                f"{spec.cls.__qualname__} must be a dataclass, whose fields are what the "
                f"journal stores; decorate it with @dataclass(frozen=True)"
            )
        if spec.cls in self._type_names:
            first = self._type_names[spec.cls].removeprefix(f"{self.name}.").rpartition("/")[0]
            raise ValueError(
                f"event class {spec.cls.__qualname__} is registered twice in aggregate "
                f"{self.name!r}, as {first!r} and as {event_name!r}; a class is stored under "
                f"one name (a name kept to read old events as this class takes a class of its "
                f"own, with a decode that builds this one)"
            )
        if isinstance(spec.version, bool) or not isinstance(spec.version, int):
            raise TypeError(
                f"event {event_name!r} of aggregate {self.name!r}: the version must be a whole "
                f"number (1 for the first schema, one more for each change), not {spec.version!r}"
            )
        if spec.version < 1:
            raise ValueError(f"event {event_name!r}: versions start at 1, not {spec.version}")
        check_decoding(self.name, event_name, spec)
        if any(key not in range(1, spec.version) for key in spec.upcasters):
            raise ValueError(_upcaster_keys_error(self.name, event_name, spec))
        missing = [v for v in range(1, spec.version) if v not in spec.upcasters]
        base = f"{self.name}.{event_name}"
        self._type_names[spec.cls] = f"{base}/{spec.version}"
        form = json_form(spec.cls)
        if form is not None:
            self._json_forms[spec.cls] = form
        if spec.decode is None:
            self._plain_types[f"{base}/{spec.version}"] = spec.cls
        fast = None if spec.decode is not None else fast_construct(spec.cls)
        build = spec.decode or fast or construct(spec.cls)
        for stored_version in range(1, spec.version + 1):
            if any(v in missing for v in range(stored_version, spec.version)):
                continue  # no way up from this version: it stays unknown, never misread
            steps = tuple(spec.upcasters[v] for v in range(stored_version, spec.version))
            self.decoders[f"{base}/{stored_version}"] = _Decoder(build, steps) if steps else build

    # -- used by the runtime and the test kit -------------------------------------------------

    def stream_id(self, entity_id: str) -> str:
        """The journal stream of ``entity_id``: ``"<name>-<entity id>"``."""
        return self._stream_prefix + entity_id

    def event_type_name(self, event: E) -> str:
        """The stored type name of ``event``; raise ``UnregisteredEvent`` if it has none."""
        try:
            return self._type_names[type(event)]
        except KeyError:
            raise UnregisteredEvent(self._unregistered(event)) from None

    def _unregistered(self, event: object) -> str:
        if isinstance(event, type):
            # A class where an event goes: `return [Deposited]`, `given(Deposited)`.
            return (
                f"the class {event.__qualname__} is not an event of aggregate {self.name!r}; "
                f"give an instance of it, such as {event.__qualname__}(...)"
            )
        if isinstance(event, list | tuple):
            # A list of events where one event goes: `given([a, b])`, `return [[a, b]]`.
            return (
                f"a {type(event).__name__} is not an event of aggregate {self.name!r}: events "
                f"are given one by one, given(a, b) (or given(*events)), and decide returns "
                f"a flat list, [a, b]"
            )
        return (
            f"{type(event).__qualname__} is not an event type of aggregate {self.name!r}; "
            f"add it to Aggregate(..., events={{...}})"
        )

    def to_new_events(self, events: Sequence[E]) -> list[NewEvent]:
        """The journal form of ``events`` (data encoded by the journal, dataclasses natively)."""
        types, data = self.event_columns(events)
        return list(map(NewEvent, types, data))

    def event_columns(self, events: Sequence[E]) -> tuple[list[str], list[Any]]:
        """The journal form of ``events`` as columns: their stored type names and their data.

        What the runtime appends with (``Journal.start_append_columns``). Raises
        ``UnregisteredEvent`` for an event whose class the aggregate does not know, and
        ``InvalidDecision`` when ``events`` is no sequence of events (see ``is_event_sequence``).
        """
        names = self._type_names
        json_forms = self._json_forms
        try:
            # The common case, without the loop. Only for a sequence: a mapping keyed 0 would
            # answer events[0] too, and its keys be folded into the state.
            if len(events) == 1 and (events.__class__ is list or is_event_sequence(events)):
                event = events[0]
                cls = type(event)
                json_form = json_forms.get(cls)
                return [names[cls]], [event if json_form is None else json_form(event)]
            if events.__class__ is not list and not is_event_sequence(events):
                # A mapping or a set: it has a length and iterates, but holds no ordered events.
                raise self.invalid_decision(events)
            types = []
            data = []
            for event in events:
                cls = type(event)
                types.append(names[cls])
                json_form = json_forms.get(cls)
                data.append(event if json_form is None else json_form(event))
        except KeyError:
            if not is_event_sequence(events):  # A mapping: events[0] looked up a key.
                raise self.invalid_decision(events) from None
            for event in events:
                self.event_type_name(event)
            raise
        except InvalidDecision:
            raise
        except TypeError:
            # Not a sequence (one event, a generator, ...): found where len() or indexing
            # fails anyway, so a list pays nothing for the check.
            if is_event_sequence(events):
                raise
            raise self.invalid_decision(events) from None
        return types, data

    def invalid_decision(self, returned: object) -> InvalidDecision:
        """The crash of a ``decide`` that returned ``returned``, no sequence of events."""
        return InvalidDecision(self.name, returned, state_type=type(self.initial))

    def decode_event(self, type_name: str, data: Any) -> E:
        """Rebuild an event from its stored type name and JSON data (upcasting old versions)."""
        decoder = self.decoders.get(type_name)
        if decoder is None:
            raise unknown_event_type(self.name, type_name, self._type_names.values(), self.decoders)
        return decoder(data)

    def explain_crash(
        self, error: BaseException, command: object, state: object, folded: bool
    ) -> None:
        """Add a note to ``error``, raised by ``decide`` (or ``evolve``) on ``command``, when
        the command is a class where an instance of it belongs (``ask(account, "42", Open)``),
        or the state is None although events were ``folded`` into it (an ``evolve`` without
        its ``return``)."""
        if state is None and folded:
            error.add_note(
                f"the state of this {self.name!r} entity was None, with events folded into it: "
                f"does evolve return the new state? (one that changes the state in place must "
                f"return it too)"
            )
        if isinstance(command, type):
            error.add_note(
                f"the command sent to aggregate {self.name!r} is the class "
                f"{command.__qualname__} itself; send an instance of it, such as "
                f"{command.__qualname__}(...)"
            )

    def explain_decoding_failure(self, error: BaseException, type_name: str, data: Any) -> None:
        """Add a note to ``error``, raised by decoding ``data`` stored as ``type_name``, when
        the event's class no longer takes that data (changed without a new version)."""
        cls = self._plain_types.get(type_name)
        if cls is None or not isinstance(error, TypeError):
            return
        note = stored_data_note(cls, type_name, data)
        if note is not None:
            error.add_note(note)

    def fold(self, state: S, events: Sequence[E]) -> S:
        """Evolve ``state`` through ``events`` in order."""
        evolve = self.evolve
        for event in events:
            state = evolve(state, event)
        return state

    def __repr__(self) -> str:
        return f"Aggregate({self.name!r})"


def _events_not_a_mapping(name: str, events: object) -> str:
    if isinstance(events, Sequence | set | frozenset) and all(
        isinstance(each, type) for each in events
    ):
        example = ", ".join(f"{each.__name__!r}: {each.__name__}" for each in events)
    else:
        example = "'Deposited': Deposited"
    return (
        f"events of aggregate {name!r} must be a mapping from the stored event name to the "
        f"event class, not a {type(events).__name__}: events={{{example}}}"
    )


def is_event_sequence(value: object) -> bool:
    """Whether ``value`` has the shape of what ``decide`` returns: a list, or another sequence
    that is not a ``str`` or ``bytes``. Anything else (one event, None, a generator, a mapping,
    a set) is an ``InvalidDecision``, empty or not.

    Invariant: the runtime applies this rule inline where ``decide`` returned nothing (see
    ``Engine._execute``), and through ``event_columns`` otherwise; the test kit calls it.
    """
    return value.__class__ is list or (
        isinstance(value, Sequence) and not isinstance(value, str | bytes)
    )


def _upcaster_keys_error(name: str, event_name: str, spec: EventType[Any]) -> str:
    valid = ", ".join(map(str, range(1, spec.version))) or "none: version 1 has no older one"
    keys = ", ".join(map(repr, spec.upcasters))
    return (
        f"event {event_name!r} of aggregate {name!r} has version {spec.version} and upcasters "
        f"for {keys}; upcasters[n] turns version n into n + 1, so the keys can only be {valid}. "
        f"Key each upcaster by the stored version it reads (upcasters={{1: ...}} reads /1 events)"
    )


def _not_a_class(name: str, event_name: str, given: object) -> str:
    if isinstance(given, str):
        what = "register the class itself, not its name"
        example = given if given.isidentifier() else "Deposited"
    elif dataclasses.is_dataclass(given):
        what = "register its class, not an instance"
        example = type(given).__name__
    else:
        what = "register the event class (a dataclass)"
        example = "Deposited"
    return (
        f"event {event_name!r} of aggregate {name!r} is registered as {given!r:.100} (a "
        f"{type(given).__name__}), not a class; {what}: events={{{event_name!r}: {example}}}"
    )


def stream_id_error(aggregate: object, entity_id: object) -> TypeError:
    """The error that explains why ``aggregate._stream_prefix + entity_id`` failed.

    Called only in the ``except`` of that failure (``TypeError`` or ``AttributeError``), so a
    call with the right arguments pays nothing for the check.
    """
    if not isinstance(aggregate, Aggregate):
        return TypeError(
            f"the first argument must be an Aggregate (the object made by Aggregate(name, "
            f"initial, decide, evolve, events=...)), not {aggregate!r:.100}"
        )
    if isinstance(entity_id, int | uuid.UUID):
        return TypeError(
            f"entity ids are str, not {type(entity_id).__name__}: pass str({entity_id!r:.100}) "
            f"as the id of the {aggregate.name!r} entity"
        )
    # Anything else is not an id to convert (str() of a command would make a nonsense id):
    # most often the command, passed where the id goes.
    return TypeError(
        f"entity ids are str, not {type(entity_id).__name__}: {entity_id!r:.100} is where the "
        f"id of the {aggregate.name!r} entity goes; the arguments are the aggregate, the "
        f"entity id, then the command: runtime.ask(aggregate, '42', command)"
    )
