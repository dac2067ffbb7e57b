"""A close whose caller is cancelled natively (``asyncio.timeout`` around ``async with
FileJournal``, ``Task.cancel``) still finishes before the cancellation goes on: the writer and
reader threads are stopped, the files closed, the clean close recorded and the lock given
back, so the journal can be opened again at once in the same process.

An anyio cancel scope cannot interrupt the close (it runs shielded); a native cancellation can,
at each of its waits for a thread. Each cancellation here lands at a chosen point
(``NativeCancellations``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from journals import FileJournal, NewEvent
from journals import _file_journal as file_journal
from journals._clean_close import read_clean_close
from journals._file_thread import CommitThread, DedicatedThreadRunner, ReaderThreads

from .native_cancellation import LockWatch, NativeCancellations

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def _use(journal: FileJournal) -> None:
    await journal.append("s", [NewEvent("E", {})], expected_version=0)
    assert [event.version async for event in journal.read("s")] == [1]


async def _reopen(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        assert await journal.stream_version("s") == 1


async def _use_until_the_deadline_passes_in_the_clean_close(
    directory: Path, watch: LockWatch
) -> None:
    async with (
        asyncio.timeout(None) as deadline,
        FileJournal(directory, file_io=watch) as journal,
    ):
        await _use(journal)
        watch.on_rename = NativeCancellations([lambda: deadline.reschedule(0)]).land


async def test_a_close_whose_deadline_passes_while_it_records_a_clean_close_finishes_first(
    tmp_path: Path,
) -> None:
    watch = LockWatch("closed-cleanly.tmp")
    with pytest.raises(TimeoutError):
        await _use_until_the_deadline_passes_in_the_clean_close(tmp_path, watch)
    assert watch.unlocked.is_set()
    assert read_clean_close(str(tmp_path)) is not None
    await _reopen(tmp_path)


class _Where:
    """Cancels the closing task natively as the close reaches one of its steps."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.runners: list[DedicatedThreadRunner] = []
        self.readers: list[ReaderThreads] = []

    def cancel_at(self, step: str) -> None:
        if step == self.step:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()


def _cancelling_threads(where: _Where) -> tuple[Callable[[CommitThread], Any], type[Any]]:
    class Runner(DedicatedThreadRunner):
        async def stop(self) -> None:
            where.cancel_at("stopping the writer")
            await super().stop()

    class Readers(ReaderThreads):
        def __init__(self, threads: int) -> None:
            super().__init__(threads)
            where.readers.append(self)

        async def stop(self) -> None:
            where.cancel_at("stopping the readers")
            await super().stop()
            where.cancel_at("closing the files")

    def make_runner(kind: CommitThread) -> DedicatedThreadRunner:
        runner = Runner()
        where.runners.append(runner)
        return runner

    return make_runner, Readers


async def _use_and_close(directory: Path, watch: LockWatch) -> None:
    async with FileJournal(directory, file_io=watch) as journal:
        await _use(journal)


@pytest.mark.parametrize(
    "step", ["stopping the writer", "stopping the readers", "closing the files"]
)
async def test_a_close_cancelled_as_it_stops_its_threads_finishes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The cancellation lands before a step's thread began: the step runs all the same."""
    where = _Where(step)
    make_runner, reader_threads = _cancelling_threads(where)
    monkeypatch.setattr(file_journal, "make_runner", make_runner)
    monkeypatch.setattr(file_journal, "ReaderThreads", reader_threads)
    watch = LockWatch("closed-cleanly.tmp")
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(asyncio.CancelledError):
        await _use_and_close(tmp_path, watch)
    assert task.uncancel() == 0
    assert watch.unlocked.is_set()
    assert read_clean_close(str(tmp_path)) is not None
    [runner] = where.runners
    [readers] = where.readers
    assert not runner._thread.is_alive()
    assert runner._receiver.fileno() == -1  # Closed.
    assert not any(thread.is_alive() for thread in readers._threads)
    monkeypatch.undo()
    await _reopen(tmp_path)
