"""While a command runs, SIGTERM does what Ctrl-C does; before and after, nothing changes.

Signals are raised in this process, in the main thread, where Python runs their handlers
before the next statement; every test restores the dispositions it changes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from runtime._cli_signals import event_loop_stopped_by, sigterm_stops_like_ctrl_c


@pytest.fixture(autouse=True)
def _dispositions_restored() -> Iterator[None]:
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def test_an_ignored_sigterm_stays_ignored_while_a_command_runs() -> None:
    # Whoever started the process chose that SIGTERM should not stop it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with sigterm_stops_like_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_the_sigterm_handler_in_place_before_a_command_is_restored_after_it() -> None:
    def custom(signal_number: int, frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGTERM, custom)
    with sigterm_stops_like_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) is not custom
    assert signal.getsignal(signal.SIGTERM) is custom


def test_sigterm_calls_the_sigint_handler_as_sigint_would() -> None:
    # An event loop's own handler may insist on being called for SIGINT (trio's does).
    received: list[int] = []

    def on_sigint(signal_number: int, frame: FrameType | None) -> None:
        received.append(signal_number)

    signal.signal(signal.SIGINT, on_sigint)
    with sigterm_stops_like_ctrl_c() as request:
        signal.raise_signal(signal.SIGTERM)
    assert received == [signal.SIGINT]
    assert (request.exit_status, request.message) == (143, "terminated")


def test_sigterm_stops_a_command_at_once_where_sigint_is_ignored_and_no_loop_runs() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with sigterm_stops_like_ctrl_c() as request, pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    assert (request.exit_status, request.message) == (143, "terminated")


def test_sigterm_stops_the_event_loop_where_sigint_is_ignored() -> None:
    # The loop is stopped as its Ctrl-C would stop it, not interrupted wherever it is.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped: list[str] = []
    with sigterm_stops_like_ctrl_c() as request:
        with event_loop_stopped_by(lambda: stopped.append("outer")):
            with event_loop_stopped_by(lambda: stopped.append("inner")):
                signal.raise_signal(signal.SIGTERM)
            assert len(request.stoppers) == 1
        assert request.stoppers == []
    assert stopped == ["inner"]
    assert request.exit_status == 143


def test_an_event_loop_outside_a_command_registers_nothing() -> None:
    # The library: no command runs, so no SIGTERM handling knows of the loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped: list[str] = []
    with (
        event_loop_stopped_by(lambda: stopped.append("outside")),
        sigterm_stops_like_ctrl_c() as request,
    ):
        assert request.stoppers == []
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    assert stopped == []


def test_an_event_loop_in_another_thread_registers_nothing() -> None:
    with sigterm_stops_like_ctrl_c() as request:
        registered: list[int] = []

        def run_loop() -> None:
            with event_loop_stopped_by(lambda: None):
                registered.append(len(request.stoppers))

        thread = threading.Thread(target=run_loop)
        thread.start()
        thread.join()
    assert registered == [0]
