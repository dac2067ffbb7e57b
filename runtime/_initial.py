"""Guarding an aggregate's ``initial`` state, which every entity starts from, against changes.

An ``evolve`` that changes its state in place is allowed, as long as it is never given
``initial`` itself: the first event of every entity would change the one object all entities
start from, and every later entity would start from (and share) it. That is caught without a
cost per command: an ``initial`` that can be changed (anything but ``None``, numbers,
strings, bytes, enum members, dates and times, and tuples, frozensets and frozen dataclasses
of them) is copied when the ``Aggregate`` is made, and compared with that copy when an entity
is activated or a past state read (for an empty state, well under a microsecond). An
``initial`` that cannot change costs activation one comparison with None.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import decimal
import enum
import fractions
import uuid

from ._exceptions import InitialStateChanged

_SCALARS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    enum.Enum,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    datetime.tzinfo,
    decimal.Decimal,
    fractions.Fraction,
    uuid.UUID,
)
_DEPTH_MAX = 20


def initial_copy(initial: object) -> object | None:
    """A copy of ``initial`` to compare it with later, or None when there is no need or no way:
    it cannot be changed in place, or it cannot be copied, or its copy is not equal to it (a
    class compared by identity, a NaN), so a comparison would say nothing."""
    if _unchangeable(initial, 0):
        return None
    try:
        copied = copy.deepcopy(initial)
        if bool(copied != initial):
            return None
    except Exception:  # a lock, a file, an __eq__ that raises: not checked
        return None
    return copied


def _unchangeable(value: object, depth: int) -> bool:
    if isinstance(value, _SCALARS):
        return True
    if depth > _DEPTH_MAX:
        return False
    if type(value) in (tuple, frozenset):
        return all(_unchangeable(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and type(value).__dataclass_params__.frozen  # type: ignore[attr-defined]
    ):
        return all(
            _unchangeable(getattr(value, each.name), depth + 1)
            for each in dataclasses.fields(value)
        )
    return False


def check_initial(name: str, initial: object, copied: object) -> None:
    """Raise ``InitialStateChanged`` if ``initial`` no longer equals its copy ``copied``."""
    try:
        changed = bool(initial != copied)
    except Exception:  # an __eq__ that raises now: nothing can be told
        return
    if changed:
        raise InitialStateChanged(name, copied, initial)
