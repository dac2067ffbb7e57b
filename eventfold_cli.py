"""The ``eventfold`` command's entry point: Ctrl-C and SIGTERM stop it quietly from its start.

The command line itself (``runtime._cli``) takes a few tenths of a second to import (the
runtime, the journals, anyio, orjson, the benchmark harness), and installs its handling of
the two signals only once a command runs. This module imports nothing else before it is ready
for them, so that a signal that lands while the rest is imported, or while the arguments are
read, ends the command as it does later: ``interrupted`` (exit status 130) or ``terminated``
(143) on stderr, never a traceback. It lives outside the ``runtime`` package, whose import is
most of that time. The words and statuses are those of ``runtime._cli_signals``, which cannot
be imported this early; a test keeps them equal.

While the command line is imported, a signal is only noted, and acted on once the import is
done: an exception raised wherever the import happens to be is not always an exception the
import lets through (a class being made turns it into a ``RuntimeError``, a weakref callback
drops it, an extension module being initialised may crash on it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType


class _Terminated(KeyboardInterrupt):
    """SIGTERM before the command's own handling is in place: unwinds as Ctrl-C does."""


def _on_sigterm(signal_number: int, frame: FrameType | None) -> None:
    raise _Terminated


def _stopped(signal_number: int) -> int:
    """Say that ``signal_number`` stopped the command; answer the exit status."""
    terminated = signal_number == signal.SIGTERM
    if sys.stderr is not None:  # None when descriptor 2 is closed: the status says it.
        with contextlib.suppress(OSError):
            print("terminated" if terminated else "interrupted", file=sys.stderr)
    return 128 + signal_number


def main() -> int:
    """Run the ``eventfold`` command; answer its exit status."""
    received: list[int] = []

    def note(signal_number: int, frame: FrameType | None) -> None:
        received.append(signal_number)

    # A signal ignored by whoever started the process stays ignored, as later.
    defaults = {
        signal.SIGINT: signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        signal.SIGTERM: signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    }
    noted = [number for number, default in defaults.items() if default]
    for number in noted:
        signal.signal(number, note)
    try:
        from runtime._cli import main as run_command
    finally:
        if signal.SIGINT in noted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if signal.SIGTERM in noted:
            # Until the command installs its own: the arguments are read in plain Python.
            signal.signal(signal.SIGTERM, _on_sigterm)
    if received:
        return _stopped(received[0])
    try:
        return run_command()
    except KeyboardInterrupt as interrupt:
        return _stopped(signal.SIGTERM if isinstance(interrupt, _Terminated) else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
