"""How the ``eventfold`` command stops on Ctrl-C (SIGINT) and SIGTERM: quietly, cleaned up.

Only the command line installs a handler, and only while a command runs: the library never
touches signal dispositions. SIGTERM (``timeout``, a CI job cancelled, ``kill``) is made to
unwind the command exactly as Ctrl-C does, so that the same ``finally`` blocks run (the
benchmarks remove their temporary journals) before the process exits with status 143.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT
"""The exit status after Ctrl-C, as a shell reports a process that SIGINT ended (130)."""

EXIT_TERMINATED = 128 + signal.SIGTERM
"""The exit status after SIGTERM, as a shell reports a process that SIGTERM ended (143)."""


@dataclass(slots=True)
class StopRequest:
    """Which signal asked the command to stop: SIGINT unless SIGTERM did.

    ``stoppers``: how to stop the event loops running in the main thread now, innermost
    last (``event_loop_stopped_by``).
    """

    signal_number: int = signal.SIGINT
    stoppers: list[Callable[[], None]] = field(default_factory=list)

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


_active: StopRequest | None = None
"""The request of the command running in the main thread, while it runs."""


@contextmanager
def event_loop_stopped_by(stop: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a SIGTERM that finds no Ctrl-C handling calls ``stop``.

    An event loop installs its Ctrl-C handling only where SIGINT has Python's default
    handler: a job that a shell script starts in the background has SIGINT ignored, and a
    ``KeyboardInterrupt`` raised wherever the loop happens to be would leave its tasks to an
    untidy shutdown. The code that runs the loop passes how to stop it as Ctrl-C would (on
    asyncio: cancel the main task, then raise ``KeyboardInterrupt`` once it has unwound).
    Outside a command (the library), nothing is registered and nothing changes.
    """
    request = _active
    if request is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    request.stoppers.append(stop)
    try:
        yield
    finally:
        request.stoppers.remove(stop)


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
        elif request.stoppers:  # SIGINT ignored: stop the event loop as its Ctrl-C would.
            request.stoppers[-1]()
        else:  # SIGINT ignored or not handled from Python, and no loop: stop at once.
            raise KeyboardInterrupt

    global _active
    outer, _active = _active, request
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        _active = outer
