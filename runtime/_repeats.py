"""Failures that repeat for one cause: logged once with their traceback, not once each.

A failed journal refuses every later append and snapshot, and an observer that raises
usually raises on every notice: logged each time with its traceback, one cause would put
thousands of identical records in a service's log, and hide whatever else it says. The
first failure of each kind in each place is logged as it always was, saying that the later
ones are not; those are logged at debug level, one line each and without a traceback, and
counted where ``statistics()`` counts them. Only failures come here: a command that succeeds
pays nothing for it.

Invariant: a key is a place (a fixed string, or one that names an aggregate) and a class of
exception, never a stream id, so the set holds a handful of keys however many entities fail.
"""

from __future__ import annotations


class Repeats:
    """The kinds of failure a runtime has logged with their traceback, by place."""

    __slots__ = ("_logged",)

    def __init__(self) -> None:
        self._logged: set[tuple[str, type[BaseException]]] = set()

    def first(self, place: str, error: BaseException) -> bool:
        """Whether ``error`` is the first failure of its class at ``place`` (then remembered)."""
        key = (place, type(error))
        if key in self._logged:
            return False
        self._logged.add(key)
        return True
