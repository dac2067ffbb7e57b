"""What every scenario receives: sizes, where to put journals, durability, workload, progress."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from runtime._cli_signals import event_loop_stopped_by

from ._progress import Progress
from ._results import Figure, ScenarioResult
from ._sizes import Sizes
from ._workload import Workload

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BenchContext:
    """The settings of one run, shared by its scenarios.

    ``directory`` is where scenarios create their journals (each in a fresh subdirectory that
    is removed afterwards); ``durable`` False runs FileJournal without fsync, and every figure
    measured so is labelled not durable.
    """

    sizes: Sizes
    directory: Path
    workload: Workload
    progress: Progress
    durable: bool = True
    backend: str = "asyncio"

    @contextmanager
    def scratch(self, name: str) -> Iterator[Path]:
        """A fresh directory under ``directory`` for one scenario, removed afterwards."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.directory))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def run_async(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``function(*args)`` in a fresh event loop of the chosen backend.

        On asyncio, uvloop is used when it is installed, as eventfold itself does.
        """
        options: dict[str, Any] = {}
        if self.backend == "asyncio" and importlib.util.find_spec("uvloop") is not None:
            options["use_uvloop"] = True
        if self.backend == "trio":
            # Ctrl-C as a cancellation of the main task at its next checkpoint, as asyncio
            # delivers it: raised at once, it could land inside the journal's or anyio's
            # bookkeeping and leave the run to an untidy end.
            options["restrict_keyboard_interrupt_to_checkpoints"] = True
        stop = _Stop()
        try:
            return anyio.run(
                _stopped_by_interrupt,
                stop,
                function,
                *args,
                backend=self.backend,
                backend_options=options,
            )
        except asyncio.CancelledError:
            if stop.requested:  # SIGTERM stopped the main task as Ctrl-C would have.
                raise KeyboardInterrupt from None
            raise

    def run_on_journal(
        self, name: str, measure: Callable[[BenchContext, Path], Awaitable[T]]
    ) -> tuple[T, float]:
        """Run ``measure(self, journal_directory)`` in a fresh scratch directory.

        Answers what it returned and how many seconds it took, scratch set-up included.
        """
        started = time.monotonic()
        with self.scratch(name) as directory:
            value = self.run_async(measure, self, directory / "journal")
        return value, time.monotonic() - started

    def result(
        self,
        name: str,
        title: str,
        figures: Sequence[Figure],
        *,
        elapsed_s: float,
        settings: Mapping[str, Any],
        notes: Sequence[str] = (),
    ) -> ScenarioResult:
        """A scenario's result.

        Every scenario's settings record whether it ran durably, and a run without fsync says
        so in its notes too.
        """
        if not self.durable:
            notes = (*notes, "FileJournal durable=False: NOT DURABLE")
        return ScenarioResult(
            name,
            title,
            figures=tuple(figures),
            notes=tuple(notes),
            settings={**settings, "durable": self.durable},
            elapsed_s=elapsed_s,
        )


_Schedule = Callable[[Callable[[], object]], Any]
"""Runs a function on the event loop soon; safe to call from a signal handler."""


class _Stop:
    """Stops a run as its Ctrl-C handling would, called from the SIGTERM handler where
    SIGINT is ignored (then neither event loop installs that handling).

    On asyncio it cancels the main task (``run_async`` turns the cancellation into
    ``KeyboardInterrupt``); on trio it cancels the scope around the run's function, through
    the run's token, which may be called from a signal handler (``_stopped_by_interrupt``
    raises ``KeyboardInterrupt`` once it has unwound).
    """

    def __init__(self) -> None:
        self.requested = False
        self._cancel: Callable[[], object] | None = None
        self._schedule: _Schedule | None = None

    def bind(self, cancel: Callable[[], object], schedule: _Schedule) -> None:
        """``cancel`` stops the run; ``schedule(function)`` runs a function on its loop soon."""
        self._cancel, self._schedule = cancel, schedule

    def __call__(self) -> None:
        cancel, schedule = self._cancel, self._schedule
        if cancel is None or schedule is None or self.requested:
            raise KeyboardInterrupt  # Not bound, or a second signal: stop at once.
        self.requested = True
        schedule(cancel)


async def _stopped_by_interrupt(
    stop: _Stop, function: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``function(*args)``, stoppable by SIGTERM where SIGINT is ignored (``_Stop``), and
    without letting an error raised while Ctrl-C cancels it hide the interrupt.

    On asyncio, Ctrl-C cancels the main task, and ``asyncio.Runner`` turns the cancellation
    into ``KeyboardInterrupt`` only if the task ends cancelled. Code that fails while it is
    being cancelled would end it with its error instead, and the run would carry on.
    """
    task = _asyncio_task()
    if task is None:  # trio
        import trio  # The backend running this, so it is installed.

        with anyio.CancelScope() as scope:
            stop.bind(scope.cancel, trio.lowlevel.current_trio_token().run_sync_soon)
            with event_loop_stopped_by(stop):
                result = await function(*args)
        if stop.requested or scope.cancelled_caught:
            raise KeyboardInterrupt
        return result
    stop.bind(task.cancel, task.get_loop().call_soon_threadsafe)
    with event_loop_stopped_by(stop):
        try:
            return await function(*args)
        except Exception as error:
            if task.cancelling():
                raise asyncio.CancelledError() from error
            raise


def _asyncio_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # Not in an asyncio event loop: trio raises KeyboardInterrupt itself.
        return None
