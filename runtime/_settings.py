"""Checks of the runtime's settings."""

from __future__ import annotations

import operator
from typing import SupportsIndex, cast


def check_bound(name: str, value: object, *, or_none: bool = False) -> int:
    """``value`` as an int, or ValueError if it is not a whole number of at least 1 (a bound
    is a count: nothing may grow without one)."""
    try:
        number = operator.index(cast(SupportsIndex, value))
    except TypeError:
        number = 0
    if number < 1 or isinstance(value, bool):
        also = " or None" if or_none else ""
        raise ValueError(f"{name} must be a whole number of at least 1{also}, not {value!r}")
    return number


def check_switch(name: str, value: object) -> bool:
    """``value`` if it is True or False; ValueError otherwise (read as a truth value, ``None``
    would turn a switch off and ``"false"`` on)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def check_timeout(value: object) -> None:
    """ValueError unless ``value`` is a number of seconds of at least 0 (``math.inf`` waits
    without a limit). NaN is refused: a deadline that never compares makes the one task
    that keeps the deadlines of all waiting callers fail, and the runtime with it."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(
            f"timeout_s must be a number of seconds of at least 0, or None to wait without a "
            f"limit, not {value!r}"
        )


def check_seconds(name: str, value: object, *, above_zero: bool, or_none: bool = False) -> None:
    """ValueError unless ``value`` is a number of seconds (an int or a float, not a bool) of at
    least 0, or above 0 when ``above_zero``: a ``timedelta``, a string or ``True`` would fail
    later, or be read as one second."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value > 0 if above_zero else value >= 0)
    ):
        rule = "> 0" if above_zero else ">= 0"
        also = " or None" if or_none else ""
        raise ValueError(f"{name} must be a number of seconds {rule}{also}, not {value!r}")
