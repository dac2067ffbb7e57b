"""Ctrl-C and SIGTERM stop ``eventfold`` quietly, at once, and clean up after the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, SimpleNamespace

import anyio
import pytest

from benchmarks.harness import DEFAULT_WORKLOAD, TINY, BenchContext, Progress, _peer
from journals import FileJournal, NewEvent
from runtime._cli import main


def test_an_error_raised_while_ctrl_c_cancels_a_scenario_does_not_hide_the_interrupt(
    tmp_path: Path,
) -> None:
    async def breaks_when_cancelled() -> None:
        try:
            signal.raise_signal(signal.SIGINT)  # asyncio's handler cancels the main task.
            await anyio.sleep(30)
        except BaseException:
            raise RuntimeError("broke while being cancelled") from None

    context = BenchContext(TINY, tmp_path, DEFAULT_WORKLOAD, Progress(enabled=False))
    with pytest.raises(KeyboardInterrupt):
        context.run_async(breaks_when_cancelled)


ROOT = Path(__file__).resolve().parent.parent
SIGNAL_DEADLINE_S = 60.0
"""How long a child may take to reach the point where the signal is sent (never reached)."""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start(
    arguments: list[str], temporary: Path, *, sigint_ignored: bool = False
) -> subprocess.Popen[bytes]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(temporary))
    return subprocess.Popen(
        [sys.executable, "-m", "runtime._cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        cwd=ROOT,
        # As a shell script starts a job in the background ('eventfold bench &').
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _signal_when(
    child: subprocess.Popen[bytes], marker: bytes, signal_number: int, later_s: float
) -> bytes:
    """Read the child's stderr until ``marker`` appears, then send ``signal_number`` after
    ``later_s``; answer stderr as read until then."""
    assert child.stderr is not None
    seen = bytearray()
    deadline = time.monotonic() + SIGNAL_DEADLINE_S
    while marker not in seen:
        assert time.monotonic() < deadline, f"no {marker!r} on stderr: {bytes(seen)!r}"
        chunk = os.read(child.stderr.fileno(), 4096)
        assert chunk, f"the child ended before {marker!r}: {bytes(seen)!r}"
        seen += chunk
    time.sleep(later_s)
    child.send_signal(signal_number)
    return bytes(seen)


def _bench_stopped_by(
    signal_number: int,
    marker: bytes,
    arguments: list[str],
    tmp_path: Path,
    later_s: float = 0.0,
    *,
    sigint_ignored: bool = False,
) -> tuple[int, str, str]:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    child = _start(
        ["bench", "--quick", "--progress", "always", *arguments],
        temporary,
        sigint_ignored=sigint_ignored,
    )
    before = _signal_when(child, marker, signal_number, later_s)
    out, after = child.communicate(timeout=SIGNAL_DEADLINE_S)
    assert list(temporary.iterdir()) == [], "the temporary journals are removed"
    return child.returncode, out.decode(), (before + after).decode()


def _last_line(stderr: str) -> str:
    return stderr.replace("\r", "\n").strip().splitlines()[-1].strip()


def test_ctrl_c_during_the_bare_loop_stops_the_run(tmp_path: Path) -> None:
    # The step is shown just before the callers start; they run for 4 windows of 0.1 s.
    code, out, err = _bench_stopped_by(
        signal.SIGINT, b"bare-loop: hot, ", ["--scenario", "hot-actor"], tmp_path, later_s=0.1
    )
    assert code == 130
    assert _last_line(err) == "interrupted"
    assert "Traceback" not in err
    assert "== hot-actor" not in out, "no scenario runs after the interrupt"
    assert "failed" not in out


def test_ctrl_c_on_trio_stops_the_run_quietly(tmp_path: Path) -> None:
    code, _, err = _bench_stopped_by(
        signal.SIGINT,
        b"journal: appenders=",
        ["--backend", "trio", "--scenario", "journal"],
        tmp_path,
    )
    assert code == 130
    assert _last_line(err) == "interrupted"
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_stops_the_run_and_removes_its_journals(tmp_path: Path, backend: str) -> None:
    # Trio's Ctrl-C handling refuses to be called for any signal but SIGINT.
    code, _, err = _bench_stopped_by(
        signal.SIGTERM,
        b"recovery: writing ",
        ["--backend", backend, "--scenario", "recovery"],
        tmp_path,
    )
    assert code == 143
    assert _last_line(err) == "terminated"
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_stops_the_run_quietly_where_sigint_is_ignored(
    tmp_path: Path, backend: str
) -> None:
    # No event loop installs its Ctrl-C handling then: SIGTERM has to stop the run itself.
    code, _, err = _bench_stopped_by(
        signal.SIGTERM,
        b"recovery: writing ",
        ["--backend", backend, "--scenario", "recovery"],
        tmp_path,
        later_s=0.2,
        sigint_ignored=True,
    )
    assert code == 143
    assert _last_line(err) == "terminated"
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err


def test_ctrl_c_during_the_peer_stops_its_threads_too(tmp_path: Path) -> None:
    code, _, err = _bench_stopped_by(
        signal.SIGINT, b"peer: callers=", ["--scenario", "peer"], tmp_path
    )
    assert code == 130
    assert _last_line(err) == "interrupted"


def _on_sigterm(signal_number: int, frame: FrameType | None) -> None:
    pass


class _ClockInterruptedOnce:
    """The peer's ``time``: Ctrl-C lands as the main thread first reads the clock, before it
    reaches the start line where its callers wait for it."""

    def __init__(self) -> None:
        self.interrupted = False

    def perf_counter_ns(self) -> int:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return time.perf_counter_ns()


def test_ctrl_c_before_the_peers_callers_start_does_not_leave_them_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    barriers: list[threading.Barrier] = []

    class RecordedBarrier(threading.Barrier):
        def __init__(self, parties: int) -> None:
            super().__init__(parties)
            barriers.append(self)

    recorded = SimpleNamespace(Barrier=RecordedBarrier, Lock=threading.Lock)
    monkeypatch.setattr(_peer, "threading", recorded)
    monkeypatch.setattr(_peer, "time", _ClockInterruptedOnce())
    application = SimpleNamespace(repository=SimpleNamespace(get=None), save=None)
    raised: list[BaseException] = []

    def measure() -> None:
        try:
            _peer._measure_point(application, ["a", "b"], 2, TINY)
        except BaseException as error:
            raised.append(error)

    # In a thread of its own, so that callers left waiting fail this test, not hang it.
    measuring = threading.Thread(target=measure, daemon=True)
    measuring.start()
    measuring.join(10.0)  # Milliseconds when the callers are let go.
    try:
        assert not measuring.is_alive(), "the callers wait at the start line for ever"
    finally:
        for barrier in barriers:
            barrier.abort()
        measuring.join()
    assert [type(error) for error in raised] == [KeyboardInterrupt]


def test_the_sigterm_handler_is_the_commands_only(capsys: pytest.CaptureFixture[str]) -> None:
    # A program that runs the command in its process keeps its own handler afterwards.
    before = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        arguments = ["bench", "--suite", "tiny", "--scenario", "limits", "--progress", "never"]
        assert main(arguments) == 0
        assert signal.getsignal(signal.SIGTERM) is _on_sigterm
    finally:
        signal.signal(signal.SIGTERM, before)


async def _fill(directory: Path) -> None:
    async with FileJournal(directory, durable=False) as journal:
        for batch in range(30):
            events = [NewEvent("Counted", {"index": index}) for index in range(100)]
            await journal.append(f"stream-{batch}", events, expected_version=None)


def test_ctrl_c_while_inspect_waits_for_a_slow_reader_stops_quietly(tmp_path: Path) -> None:
    anyio.run(_fill, tmp_path / "journal")
    child = _start(["inspect", str(tmp_path / "journal")], tmp_path)
    assert child.stdout is not None
    # The events are far more than a pipe holds: past the first line, inspect waits for
    # this reader, which stops reading.
    assert child.stdout.readline().startswith(b'{"position":1,')
    child.send_signal(signal.SIGINT)
    child.stdout.close()
    _, err = child.communicate(timeout=SIGNAL_DEADLINE_S)
    assert child.returncode == 130
    assert err.decode() == "interrupted\n"
