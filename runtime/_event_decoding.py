"""Refusing, when an ``Aggregate`` is made, event types that a replay could never decode.

The runtime would write such events, and every entity given one would fail to activate only
when it is next read from the journal (after a restart, a passivation or a crash).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._aggregate import EventType


def check_decoding(name: str, event_name: str, spec: EventType[Any]) -> None:
    """Refuse at registration what a replay of the event could never decode: the runtime
    would write such events, and the entity fail to load only when it is next activated."""
    what = f"event {event_name!r} of aggregate {name!r}"
    if not isinstance(spec.upcasters, Mapping):
        raise TypeError(
            f"{what}: upcasters must be a mapping from a stored version to the function that "
            f"turns its data into the data of the next version, not a "
            f"{type(spec.upcasters).__name__}: upcasters={{1: upgrade_from_1}}"
        )
    for version, upcaster in spec.upcasters.items():
        if not callable(upcaster):
            raise TypeError(
                f"{what}: upcasters[{version!r}] is {upcaster!r:.100}, not a function; each "
                f"upcaster takes the JSON data of its version and returns that of the next"
            )
    if spec.decode is not None:
        if not callable(spec.decode):
            raise TypeError(
                f"{what}: decode is {spec.decode!r:.100}, not a function; give a function "
                f"that builds the event from its JSON data, or leave decode out to build it "
                f"with {spec.cls.__qualname__}(**data)"
            )
        return
    # Names starting with "_" are not stored, so __init__ never gets them on a replay.
    fields = dataclasses.fields(spec.cls)
    unstored = _required_but_not_stored(spec.cls, fields)
    if unstored:
        listed = ", ".join(map(repr, unstored))
        raise ValueError(
            f"{what}: {spec.cls.__qualname__}(...) requires {listed}, which an event's stored "
            f"data does not hold (it holds the fields whose names do not start with '_'; an "
            f"InitVar is no field), and a replay rebuilds the event with "
            f"{spec.cls.__qualname__}(**data), so every entity given such an event would fail "
            f"to activate. Make each a field whose name does not start with '_' to store it, "
            f"give it a default (a replay then builds the event with that default), or give "
            f"EventType({spec.cls.__qualname__}, decode=...) a function that builds the event "
            f"from its data"
        )
    computed = [each.name for each in fields if not each.init and not each.name.startswith("_")]
    if computed:
        listed = ", ".join(map(repr, computed))
        raise ValueError(
            f"{what}: {spec.cls.__qualname__} has fields with init=False ({listed}); an event "
            f"is stored as its fields and a replay rebuilds it with "
            f"{spec.cls.__qualname__}(**data), whose __init__ does not take them. Make each a "
            f"property (computed, not stored), or give EventType({spec.cls.__qualname__}, "
            f"decode=...) a function that builds the event from its data"
        )


def _required_but_not_stored(
    cls: type[Any], fields: tuple[dataclasses.Field[Any], ...]
) -> list[str]:
    """The arguments that ``cls(...)`` requires and ``cls(**data)`` cannot pass from stored
    data: fields whose names start with ``_`` and init-only variables, without a default."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # No signature to read: nothing can be told.
        return []
    stored = {each.name for each in fields if not each.name.startswith("_")}
    return [
        each.name
        for each in parameters
        if each.default is inspect.Parameter.empty
        and (
            each.kind is inspect.Parameter.POSITIONAL_ONLY
            or (
                each.kind
                in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                and each.name not in stored
            )
        )
    ]


def stored_data_note(cls: type[Any], type_name: str, data: Any) -> str | None:
    """What to do about ``data``, stored as ``type_name``, that ``cls(**data)`` refuses: its
    keys are not the arguments ``cls`` takes (a field removed, renamed or added without a
    default since it was stored, with no new version). None when the keys fit (the error
    came from elsewhere) or nothing can be told."""
    if data.__class__ is not dict:
        return None
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = {each.name for each in parameters if each.kind in keyword}
    # *args and **kwargs have no default, yet require nothing; a **kwargs takes any key.
    named = (*keyword, inspect.Parameter.POSITIONAL_ONLY)
    required = {
        each.name
        for each in parameters
        if each.kind in named and each.default is inspect.Parameter.empty
    }
    any_key = any(each.kind is inspect.Parameter.VAR_KEYWORD for each in parameters)
    unknown = [] if any_key else sorted(data.keys() - takes)
    missing = sorted(required - data.keys())
    if not unknown and not missing:
        return None
    parts = []
    if unknown:
        parts.append(f"takes no {', '.join(map(repr, unknown))}")
    if missing:
        parts.append(f"requires {', '.join(map(repr, missing))}")
    name = cls.__qualname__
    version = type_name.rpartition("/")[2]
    if version.isdigit():
        stored, new = int(version), int(version) + 1
        remedy = (
            f"register its new form as version {new}, with an upcaster that turns the data of "
            f"version {stored} into it: EventType({name}, version={new}, upcasters="
            f"{{{stored}: ...}})"
        )
    else:
        remedy = "register its new form as a new version, with an upcaster from this one"
    return (
        f"{name}(...) {' and '.join(parts)}, and the event stored as {type_name!r} holds the "
        f"keys {sorted(data)!r:.200}: the class has changed since such events were stored, "
        f"without a new version. Keep the stored form readable: {remedy}"
    )
