"""How the ``eventfold`` command stops on Ctrl-C (SIGINT) and SIGTERM: quietly, cleaned up.

Only the command line installs a handler, and only while a command runs: the library never
touches signal dispositions. SIGTERM (``timeout``, a CI job cancelled, ``kill``) is made to
unwind the command exactly as Ctrl-C does, so that the same ``finally`` blocks run (the
benchmarks remove their temporary journals) before the process exits with status 143.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT
"""The exit status after Ctrl-C, as a shell reports a process that SIGINT ended (130)."""

EXIT_TERMINATED = 128 + signal.SIGTERM
"""The exit status after SIGTERM, as a shell reports a process that SIGTERM ended (143)."""


@dataclass(slots=True)
class StopRequest:
    """Which signal asked the command to stop: SIGINT unless SIGTERM did."""

    signal_number: int = signal.SIGINT

    @property
    def exit_status(self) -> int:
        return EXIT_TERMINATED if self.signal_number == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def message(self) -> str:
        return "terminated" if self.signal_number == signal.SIGTERM else "interrupted"


def is_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is Ctrl-C, alone or inside an exception group (as trio raises it)."""
    if isinstance(error, KeyboardInterrupt):
        return True
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(KeyboardInterrupt) is not None
    return False


@contextmanager
def sigterm_stops_like_ctrl_c() -> Iterator[StopRequest]:
    """While the block runs, SIGTERM does what Ctrl-C does; the previous handler is restored.

    The SIGINT handler in effect when SIGTERM arrives is called: an event loop's own (asyncio
    and trio cancel their work and raise ``KeyboardInterrupt`` when it has unwound) or
    Python's default, which raises ``KeyboardInterrupt`` at once. A SIGTERM ignored by
    whoever started the process stays ignored, and nothing is installed outside the main
    thread, where Python cannot install handlers.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield request
        return

    def on_sigterm(signal_number: int, frame: FrameType | None) -> None:
        request.signal_number = signal.SIGTERM
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt):
            interrupt(signal.SIGINT, frame)
        else:  # SIGINT ignored or not handled from Python: stop all the same.
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
