"""Taking a snapshot: the state encoded as it will be stored, and checked to come back as it was.

A snapshot is encoded when it is taken (every ``snapshot_every`` events, or on passivation),
never per command, and before anything yields: what is stored is the state at its version,
even if a later ``evolve`` changes that object in place. With the default ``decode_state``
(``type(initial)(**data)``, or the data itself for a state that is no dataclass), a state
that would come back from the journal's JSON with other types (an ``Enum`` as its value, a
tuple as a list, a nested dataclass as a dict) is not stored: a snapshot must never change
the state an entity is activated with. A ``decode_state`` of the aggregate's own is trusted.

Snapshots that cannot be taken are counted by the engine (``snapshots_skipped``) and logged
in full once a minute at most per aggregate and kind of failure (``_repeats``), the others at
debug level: the same shape of state fails the same way at every snapshot of every entity,
and one log record with its reason says all there is to say, until a later incident.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from journals import decode_data, encode_data

from ._actor import SNAPSHOT_AGGREGATE_KEY, SNAPSHOT_SCHEMA_KEY, logger
from ._aggregate import Aggregate
from ._repeats import IN_THE_NEXT_MINUTE, Repeats, since_last

_NOT_LOGGED_AGAIN = (
    "Later snapshots of aggregate %r that fail so " + IN_THE_NEXT_MINUTE + " are logged at "
    "debug level (statistics().snapshots_skipped counts them)%s."
)


class _ChangedByRoundTrip(Exception):
    """The kind of failure of a state that would not come back from its snapshot as it is
    (a key of ``Repeats``; never raised)."""


_CHANGED_BY_ROUND_TRIP = _ChangedByRoundTrip()


class SnapshotEncoder:
    """Encodes the states of one runtime's snapshots; ``repeats`` paces the logging of the
    ones that cannot be taken (the runtime's, shared with its other failures)."""

    __slots__ = ("_repeats",)

    def __init__(self, repeats: Repeats) -> None:
        self._repeats = repeats

    def encode(
        self, aggregate: Aggregate[Any, Any, Any], stream_id: str, state: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        """The data and metadata to store for a snapshot of ``state``, or None when it cannot
        be taken (logged, the first time for this aggregate).

        The data is the JSON value the journal stores, decoded from the bytes encoded now:
        plain dicts, lists and scalars that nothing else holds a reference to.
        """
        name = aggregate.name
        try:
            encoded = encode_data(aggregate.encode_state(state), "snapshot data")
        except Exception as error:
            since = self._repeats.due(f"snapshot of {name} encoded", error)
            if since is None:
                logger.debug(
                    "no snapshot of %r taken: encode_state raised, or what it returned cannot "
                    "be stored as JSON: %s",
                    stream_id,
                    type(error).__name__,
                )
            else:
                logger.error(
                    "no snapshot of %r taken: encode_state raised, or what it returned cannot "
                    "be stored as JSON (see the traceback). " + _NOT_LOGGED_AGAIN,
                    stream_id,
                    name,
                    since_last(since),
                    exc_info=error,
                )
            return None
        data = decode_data(encoded)
        if is_default_decode_state(aggregate):
            changed = _changed_by_round_trip(aggregate, state, data)
            if changed is not None:
                since = self._repeats.due(f"snapshot of {name} checked", _CHANGED_BY_ROUND_TRIP)
                if since is None:
                    logger.debug("no snapshot of %r taken: %.300s", stream_id, changed)
                else:
                    logger.warning(
                        "no snapshot of %r taken: %s; activated from it, the entity would have "
                        "another state than its events give. Give Aggregate(%r, ...) an "
                        "encode_state and a decode_state that rebuild the state, or keep to "
                        "types that JSON gives back (str, int, float, bool, None, lists and "
                        "dicts of them, in a dataclass of such fields). " + _NOT_LOGGED_AGAIN,
                        stream_id,
                        changed,
                        name,
                        name,
                        since_last(since),
                    )
                return None
        metadata = {SNAPSHOT_AGGREGATE_KEY: name, SNAPSHOT_SCHEMA_KEY: aggregate.snapshot_schema}
        return data, metadata


def is_default_decode_state(aggregate: Aggregate[Any, Any, Any]) -> bool:
    """Whether the aggregate decodes its snapshots with the default ``decode_state`` (it was
    given none)."""
    return aggregate._default_decode_state


def _changed_by_round_trip(
    aggregate: Aggregate[Any, Any, Any], state: Any, data: Any
) -> str | None:
    """How ``state`` comes back from its snapshot ``data`` (as the journal gives it back), if
    not as it is; None if it does. Decoding or comparing that raises counts as coming back
    changed. The state decoded is only compared, then dropped: ``data`` is what is stored."""
    try:
        decoded = aggregate.decode_state(data)
    except Exception as error:
        return f"the default decode_state raises {_shown(error)} on its stored form"
    try:
        # Fields an encode_state of the user's leaves out come back as their defaults, as
        # chosen: compared as == compares them, like a decode_state of the user's is trusted.
        stored_fields = aggregate._default_encode_state
        return difference(state, decoded, "state", stored_fields=stored_fields)
    except Exception as error:
        return f"comparing the state with its stored form raises {_shown(error)}"


def _shown(error: Exception) -> str:
    """``repr(error)``, cut to 200 characters; its class when that raises in turn (a
    ``__repr__`` of the user's, or of one of its arguments): the snapshot is checked as a
    command succeeds or an actor is evicted, which must not fail for it."""
    try:
        return f"{error!r:.200}"
    except Exception as failure:
        return f"{type(error).__qualname__} (its repr raises {type(failure).__qualname__})"


def difference(
    original: Any, decoded: Any, path: str = "value", *, stored_fields: bool = False
) -> str | None:
    """Where ``decoded`` differs from ``original``, in value or in type, or None.

    Equality alone is not enough: ``Kind.GOLD == "gold"`` for a ``StrEnum``, ``1 == 1.0``,
    ``(1,) != [1]`` but a tuple nested in a dataclass field compares only as a whole. A
    replay hands ``evolve`` what the decoder built, so every field and item must come back
    with its type. Dataclass fields left out of ``==`` (``compare=False``) are left out here,
    unless ``stored_fields``: then only those whose names start with ``_`` are (not stored,
    by design). A state activated from a snapshot is what ``evolve`` and ``decide`` are given
    from then on, so every field stored in it must come back (a ``compare=False`` timestamp
    as a ``str`` would be a misread); an event is compared as ``==`` compares it, since the
    test kit folds the decoded events and shows the effect of what a field comes back as.
    A dataclass without ``==`` of its own (``eq=False``: equal only to itself) is compared
    by its fields alone. An aware datetime or time must come back in its own time zone.
    """
    if type(original) is not type(decoded):
        return (
            f"{path} is a {type(original).__qualname__} and comes back as a "
            f"{type(decoded).__qualname__}"
        )
    pairs: list[tuple[Any, Any, str]] = []
    compare = True
    if dataclasses.is_dataclass(original) and not isinstance(original, type):
        pairs = [
            (getattr(original, each.name), getattr(decoded, each.name), f"{path}.{each.name}")
            for each in dataclasses.fields(original)
            if each.compare or (stored_fields and not each.name.startswith("_"))
        ]
        compare = type(original).__eq__ is not object.__eq__
    elif isinstance(original, dict):
        if original.keys() != decoded.keys():
            keys, decoded_keys = list(original), list(decoded)
            return f"{path} has the keys {keys!r:.200} and comes back with {decoded_keys!r:.200}"
        pairs = [(item, decoded[key], f"{path}[{key!r}]") for key, item in original.items()]
    elif isinstance(original, list | tuple):
        if len(original) != len(decoded):
            return f"{path} holds {len(original)} items and comes back with {len(decoded)}"
        pairs = [(item, decoded[index], f"{path}[{index}]") for index, item in enumerate(original)]
    elif isinstance(original, datetime.datetime | datetime.time) and original.tzinfo is not None:
        # Aware datetimes are equal at the same instant, whatever their zones; but a zone with
        # rules (a ZoneInfo) that comes back as a fixed offset changes later arithmetic.
        if original.tzinfo != decoded.tzinfo:
            return (
                f"{path} is in the time zone {original.tzinfo!r:.100} and comes back in "
                f"{decoded.tzinfo!r:.100}"
            )
    elif isinstance(original, set | frozenset):
        for item in original:
            match = next((other for other in decoded if other == item), _MISSING)
            if match is _MISSING:
                return f"{path} holds {item!r:.100} and comes back without it"
            pairs.append((item, match, f"{path}'s item {item!r:.100}"))
    for item, decoded_item, item_path in pairs:
        found = difference(item, decoded_item, item_path, stored_fields=stored_fields)
        if found is not None:
            return found
    if compare and original != decoded:
        return f"{path} is {original!r:.100} and comes back as {decoded!r:.100}"
    return None


_MISSING = object()
