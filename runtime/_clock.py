"""The runtime's clock, injectable so that tests of timers and backoff never sleep."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Monotonic seconds and a way to wait for them."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The default clock: ``time.monotonic`` and ``anyio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def check_clock(clock: object) -> None:
    """TypeError unless ``clock`` has a Clock's ``now()`` and ``sleep(seconds)``: anything else
    would fail only as the runtime starts or at its first timer, far from the mistake."""
    if isinstance(clock, type):
        # A class has now and sleep too, as functions that want an instance.
        raise TypeError(
            f"clock must be a clock object, not the class {clock.__qualname__}: "
            f"clock={clock.__qualname__}()"
        )
    if not (callable(getattr(clock, "now", None)) and callable(getattr(clock, "sleep", None))):
        raise TypeError(
            f"clock must have now() (monotonic seconds) and async sleep(seconds), or be None "
            f"for the system clock, not {clock!r:.100}"
        )
