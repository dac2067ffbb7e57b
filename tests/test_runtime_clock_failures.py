"""A clock that fails as the runtime starts or stops: the runtime still leaves what it
entered, and the clock's error comes out of ``async with``."""

from __future__ import annotations

import pytest

from journals import MemoryJournal
from runtime import Runtime
from runtime.testing import ManualClock

from .test_runtime_bank import Open, account


class FailingClock(ManualClock):
    """A clock whose ``now`` raises once it has been read ``reads_before_failing`` times,
    or while ``failing`` is set."""

    def __init__(self, reads_before_failing: int | None = None) -> None:
        super().__init__()
        self.failing = False
        self.reads = 0
        self.reads_before_failing = reads_before_failing
        self.runtime: Runtime | None = None  # The runtime that read it, once it has.

    def now(self) -> float:
        self.reads += 1
        if self.failing or (
            self.reads_before_failing is not None and self.reads > self.reads_before_failing
        ):
            raise OSError("the clock failed")
        return super().now()


async def _serves(journal: MemoryJournal) -> None:
    """A new runtime, entered and left in the same task, serves the journal: whatever the one
    before entered was left."""
    async with Runtime(journal) as runtime:
        result = await runtime.ask(account, "43", Open("bob"))
        assert result.version == 1


async def _run(journal: MemoryJournal, clock: FailingClock, body_error: bool) -> None:
    """Run a runtime that answers one command, then its clock fails before it exits (and
    its body raises, with ``body_error``)."""
    async with Runtime(journal, clock=clock) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        clock.failing = True
        clock.runtime = runtime
        if body_error:
            raise ValueError("the body's")


@pytest.mark.anyio
async def test_a_clock_that_fails_as_the_runtime_exits_fails_the_exit_after_shutting_down() -> None:
    clock = FailingClock()
    async with MemoryJournal() as journal:
        with pytest.raises(OSError, match="the clock failed"):
            await _run(journal, clock, body_error=False)
        clock.failing = False
        assert clock.runtime is not None
        statistics = clock.runtime.statistics()
        assert (statistics.commands, statistics.live_actors, statistics.busy_actors) == (1, 0, 0)
        await _serves(journal)
        assert await journal.stream_version("account-42") == 1


@pytest.mark.anyio
async def test_the_body_s_error_comes_out_with_a_note_of_the_clock_s() -> None:
    clock = FailingClock()
    async with MemoryJournal() as journal:
        with pytest.raises(ValueError, match="the body's") as raised:
            await _run(journal, clock, body_error=True)
        assert any("clock failed too" in note for note in raised.value.__notes__)
        await _serves(journal)


async def _start(journal: MemoryJournal, clock: FailingClock) -> None:
    async with Runtime(journal, clock=clock):
        pytest.fail("the body ran with the runtime not started")


@pytest.mark.anyio
async def test_a_clock_that_fails_as_the_runtime_starts_leaves_nothing_entered() -> None:
    clock = FailingClock(reads_before_failing=1)  # The first reading, before anything starts.
    async with MemoryJournal() as journal:
        with pytest.raises(OSError, match="the clock failed"):
            await _start(journal, clock)
        await _serves(journal)
