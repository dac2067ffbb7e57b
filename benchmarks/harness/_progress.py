"""Progress on a terminal, silence elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One self-overwriting status line on a terminal; nothing when the stream is not a tty.

    Scenarios call ``step("callers=100, repetition 2/3")``; the line shows the scenario, the
    step and the time since the scenario began. ``enabled=None`` decides from the stream.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self._stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._scenario = ""
        self._started = time.monotonic()
        self._width = 0

    def begin(self, scenario: str) -> None:
        self._scenario = scenario
        self._started = time.monotonic()
        self.step("starting")

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        line = f"  {self._scenario}: {text} ({elapsed:.1f} s)"
        padding = " " * max(self._width - len(line), 0)
        self._width = len(line)
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()

    def clear(self) -> None:
        """Erase the status line so that regular output starts on a clean line."""
        if not self.enabled or not self._width:
            return
        self._stream.write("\r" + " " * self._width + "\r")
        self._stream.flush()
        self._width = 0
