"""What ``statistics()`` answers at the edges of a runtime's life and under load: uptime
before the runtime has started, the outbox's commands waiting for room, and figures that
stay exact while they are kept as the actors change rather than counted per call."""

from __future__ import annotations

from typing import Self

import anyio
import pytest

from journals import MemoryJournal
from runtime import Runtime
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, account
from .test_runtime_manual_journal import ManualJournal

# A clock far from 0: an uptime measured from 0 rather than from the start shows as its reading.
CLOCK_START_S = 1_000.0


class GatedOpening(MemoryJournal):
    """A MemoryJournal whose opening waits for ``gate`` (as a FileJournal's recovery of a
    large journal takes a while), and fails with ``failure`` when one is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.failure: Exception | None = None

    async def __aenter__(self) -> Self:
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return await super().__aenter__()


@pytest.mark.anyio
async def test_uptime_is_zero_while_an_owned_journal_opens_and_after_it_fails_to() -> None:
    clock = ManualClock(CLOCK_START_S)
    journal = GatedOpening()
    runtime = Runtime(journal, owns_journal=True, clock=clock)
    seen: list[float] = []

    async def enter() -> None:
        with pytest.raises(OSError, match="cannot open"):
            async with runtime:
                raise AssertionError("the runtime started on a journal that did not open")

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter)
        await anyio.wait_all_tasks_blocked()  # The opening waits for the gate.
        clock.advance(5)
        seen.append(runtime.statistics().uptime_s)
        journal.failure = OSError("cannot open")
        journal.gate.set()
    clock.advance(5)
    statistics = runtime.statistics()
    seen.append(statistics.uptime_s)
    assert seen == [0.0, 0.0]
    assert statistics.commands_per_s == 0.0


@pytest.mark.anyio
async def test_uptime_stops_at_exit_also_when_the_clock_read_zero_then() -> None:
    clock = ManualClock()  # Reads 0 until advanced: the start and the exit both at 0.
    async with MemoryJournal() as journal, Runtime(journal, clock=clock) as runtime:
        pass
    clock.advance(5)
    assert runtime.statistics().uptime_s == 0.0


@pytest.mark.anyio
async def test_a_queued_command_waiting_for_room_counts_in_the_outbox_only() -> None:
    journal = ManualJournal(start_appends=True)  # Nothing is durable until it commits.
    async with journal, Runtime(journal, mailbox_bound=2) as runtime:
        for amount in range(1, 6):
            runtime.tell_nowait(account, "42", Deposit(amount))
        # Two commands hold the slots; the third, delivered, waits for room; two are queued.
        await anyio.wait_all_tasks_blocked()
        statistics = runtime.statistics()
        assert (statistics.commands_in_flight, statistics.outbox_depth) == (2, 3)
        assert statistics.callers_waiting_for_room == 0
        # A caller of its own waiting for room behind it is counted.
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.tell, account, "42", Deposit(6))
            await anyio.wait_all_tasks_blocked()
            statistics = runtime.statistics()
            assert (statistics.callers_waiting_for_room, statistics.outbox_depth) == (1, 3)
            while journal.pending:
                journal.commit()
                await anyio.wait_all_tasks_blocked()
        statistics = runtime.statistics()
        assert (statistics.commands, statistics.outbox_depth) == (6, 0)
        assert (statistics.commands_in_flight, statistics.callers_waiting_for_room) == (0, 0)
