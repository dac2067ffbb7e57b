"""Failures that repeat for one cause: logged with their traceback once a minute, not each time.

A failed journal refuses every later append and snapshot, and an observer that raises
usually raises on every notice: logged each time with its traceback, one cause would put
thousands of identical records in a service's log, and hide whatever else it says. The
first failure of each kind in each place is logged as it always was, saying that the later
ones are not; for ``REPEAT_INTERVAL_S`` those are logged at debug level, one line each and
without a traceback, and counted where ``statistics()`` counts them. The first one after
that is logged with its traceback again, saying how many went to debug level meanwhile, so
that a failure of the same kind an hour later (another incident) is seen. Only failures
come here: a command that succeeds pays nothing for it.

Invariant: a key is a place (a fixed string, or one that names an aggregate) and a class of
exception, never a stream id, so the map holds a handful of keys however many entities fail.
Classes of exception made while the program runs (some libraries make one per client or per
remote error) would still add keys without end, and keep each class alive: the map holds at
most ``REPEAT_KINDS_MAX`` keys, in the order they were last logged in full, and forgets the
oldest first (its next failure is then logged in full, as a first one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

REPEAT_INTERVAL_S = 60.0
"""How long, after a failure is logged with its traceback, others of its kind go to debug."""

REPEAT_KINDS_MAX = 1024
"""How many kinds of failure are remembered at most (see the module's invariant)."""

IN_THE_NEXT_MINUTE = "in the next minute"
"""How messages name ``REPEAT_INTERVAL_S``."""


@dataclass(slots=True)
class _Logged:
    at: float  # When one was last logged with its traceback (``Repeats``' clock).
    since: int = 0  # Those of its kind logged at debug level since.


class Repeats:
    """When each kind of failure was last logged with its traceback, by place.

    ``now`` reads the time the interval is measured in: the monotonic clock, not the
    runtime's (which a test may hold still or move by hours), since it paces what a reader
    of the log sees; and reading it here never fails, as a clock of the caller's might.
    """

    __slots__ = ("_logged", "_now")

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._logged: dict[tuple[str, type[BaseException]], _Logged] = {}

    def due(self, place: str, error: BaseException) -> int | None:
        """Whether to log ``error`` with its traceback: None when one of its class was at
        ``place`` less than ``REPEAT_INTERVAL_S`` ago (this one is counted, for debug level);
        otherwise how many were counted since that one (0 for the first), and it is now."""
        key = (place, type(error))
        now = self._now()
        kinds = self._logged
        logged = kinds.get(key)
        if logged is not None and now - logged.at < REPEAT_INTERVAL_S:
            logged.since += 1
            return None
        if logged is not None:
            del kinds[key]  # Inserted again below, last: the map stays in order of time.
        elif len(kinds) >= REPEAT_KINDS_MAX:
            del kinds[next(iter(kinds))]  # The kind logged in full longest ago.
        kinds[key] = _Logged(now)
        return 0 if logged is None else logged.since


def since_last(count: int) -> str:
    """What a message adds for the failures of its kind logged at debug level since the last
    one logged with its traceback."""
    if not count:
        return ""
    return f" ({count} more of this kind were logged at debug level since the last such record)"
