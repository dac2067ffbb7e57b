"""Refusing, when an ``Aggregate`` is made, event types that a replay could never decode.

The runtime would write such events, and every entity given one would fail to activate only
when it is next read from the journal (after a restart, a passivation or a crash).
"""

from __future__ import annotations

import dataclasses
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
    unstored = [
        each.name
        for each in fields
        if each.init
        and each.name.startswith("_")
        and each.default is dataclasses.MISSING
        and each.default_factory is dataclasses.MISSING
    ]
    if unstored:
        listed = ", ".join(map(repr, unstored))
        raise ValueError(
            f"{what}: {spec.cls.__qualname__} has fields whose names start with '_' and that "
            f"have no default ({listed}); an event is stored without such fields and a replay "
            f"rebuilds it with {spec.cls.__qualname__}(**data), which would miss them, so "
            f"every entity given such an event would fail to activate. Rename each without "
            f"the '_' to store it, give it a default (a replay then builds the event with "
            f"that default), or give EventType({spec.cls.__qualname__}, decode=...) a "
            f"function that builds the event from its data"
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
