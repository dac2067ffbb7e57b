"""The default ``decode_state``: a state rebuilt from its snapshot's JSON data.

For a dataclass state that is ``type(initial)(**data)``, with one check first: the data must
hold every field that its class's ``__init__`` takes (but those whose names start with
``_``, which are not stored), and no key that is not a field. A
snapshot taken while the state had another shape (a field added since, and the
``snapshot_schema`` not bumped) would otherwise be built with that field's default rather
than with what the events gave it, and the entity would go on from a state its events never
had. Such data raises ``SnapshotShapeMismatch``: activation skips the snapshot and folds the
events. The check is one comparison of key sets per snapshot read, never per command.

Only with the default ``encode_state``, which stores every such field: an ``encode_state`` of
the user's may leave fields out on purpose (a cache, a value computed again), to come back as
their defaults, as they always did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ._exceptions import SnapshotShapeMismatch


def default_decode_state(initial: Any, *, check_keys: bool = True) -> Callable[[Any], Any]:
    """How a snapshot of a state shaped as ``initial`` is decoded when the aggregate gives no
    ``decode_state``: a dataclass state by its class, any other state as the data itself;
    ``check_keys``: refuse data whose keys are not the fields that the default
    ``encode_state`` stores."""
    if not dataclasses.is_dataclass(initial) or isinstance(initial, type):
        return lambda data: data
    cls = type(initial)
    if not check_keys:
        return lambda data: cls(**data)
    fields = dataclasses.fields(cls)
    # What the snapshot of such a state holds, at least: the fields that __init__ takes,
    # except that orjson leaves out names starting with "_". And at most: all its fields (one
    # with init=False is stored too, and refused by __init__ below, as before).
    stored = frozenset(each.name for each in fields if each.init and not each.name.startswith("_"))
    known = frozenset(each.name for each in fields)
    name = cls.__qualname__

    def decode(data: Any) -> Any:
        if data.__class__ is dict:
            keys = data.keys()
            if not (keys >= stored and keys <= known):
                raise SnapshotShapeMismatch(
                    name,
                    missing=sorted(stored.difference(keys)),
                    unknown=sorted(keys - known),
                    stored=list(keys),
                )
        return cls(**data)

    return decode
