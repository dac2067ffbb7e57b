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
        return anyio.run(
            _stopped_by_interrupt, function, *args, backend=self.backend, backend_options=options
        )

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


async def _stopped_by_interrupt(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``function(*args)``, except that an error raised while Ctrl-C cancels it is not
    allowed to hide the interrupt.

    On asyncio, Ctrl-C cancels the main task, and ``asyncio.Runner`` turns the cancellation
    into ``KeyboardInterrupt`` only if the task ends cancelled. Code that fails while it is
    being cancelled would end it with its error instead, and the run would carry on.
    """
    try:
        return await function(*args)
    except Exception as error:
        task = _asyncio_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError() from error
        raise


def _asyncio_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # Not in an asyncio event loop: trio raises KeyboardInterrupt itself.
        return None
