"""``statistics().commands_per_s_recent``: the commands answered with success in the last
second, per second, which falls to 0 once the runtime is idle (where ``commands_per_s`` stays
the average since the start). What samples it, a task that sleeps while the runtime is idle,
and how it reads a rate from the samples (as a pure function, with hypothesis)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import pytest
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st

from journals import MemoryJournal
from runtime import CommandRejected, MailboxTimeout, Runtime, RuntimeClosed
from runtime._rate import RATE_WINDOW_S, RecentRate
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, Withdraw, account
from .test_runtime_manual_journal import ManualJournal

START_S = 1_000.0


def recent(runtime: Runtime) -> float:
    return runtime.statistics().commands_per_s_recent


async def _deposits(runtime: Runtime, count: int, entity_id: str = "42") -> None:
    for _ in range(count):
        await runtime.ask(account, entity_id, Deposit(1))


@pytest.mark.anyio
async def test_the_recent_rate_counts_the_last_second_and_falls_to_zero_when_idle() -> None:
    clock = ManualClock(START_S)
    async with MemoryJournal() as journal, Runtime(journal, clock=clock) as runtime:
        assert recent(runtime) == 0.0  # no time has passed
        await _deposits(runtime, 10)
        assert recent(runtime) == 0.0
        clock.advance(0.5)
        # Younger than the window: the average since the start, as commands_per_s.
        statistics = runtime.statistics()
        assert (statistics.commands_per_s_recent, statistics.commands_per_s) == (20.0, 20.0)
        await _deposits(runtime, 5)
        with pytest.raises(CommandRejected):  # Not answered with success: not counted.
            await runtime.ask(account, "42", Withdraw(1_000))
        clock.advance(0.75)
        # The last second holds the 5 commands answered at 0.5 s, not the 10 at 0 s.
        assert recent(runtime) == 5.0
        # A read from another thread sees the same, and changes nothing.
        assert await anyio.to_thread.run_sync(recent, runtime) == 5.0
        clock.advance(1.0)
        statistics = runtime.statistics()
        assert (statistics.commands_per_s_recent, statistics.commands_per_s) == (0.0, 15 / 2.25)
        await _deposits(runtime, 3)
        clock.advance(0.25)
        assert recent(runtime) == 3.0
    clock.advance(0.25)
    statistics = runtime.statistics()  # Nothing runs once the runtime has exited.
    assert (statistics.commands, statistics.commands_per_s_recent) == (18, 0.0)


@pytest.mark.anyio
async def test_commands_that_time_out_are_cancelled_or_refused_at_shutdown_are_not_in_it() -> None:
    clock = ManualClock(START_S)
    journal = ManualJournal()  # Nothing is durable until the test commits it.
    outcomes: list[Any] = []

    async def ask() -> None:
        try:
            outcomes.append(await runtime.ask(account, "42", Deposit(1)))
        except RuntimeClosed as error:
            outcomes.append(error)

    async with anyio.create_task_group() as tg:
        runtime = Runtime(journal, clock=clock, mailbox_bound=1, shutdown_timeout_s=0)
        async with runtime:
            tg.start_soon(ask)  # Holds the one slot.
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(MailboxTimeout):
                await runtime.ask(account, "42", Deposit(1), timeout_s=0)
            with anyio.move_on_after(0.001):  # Cancelled while it waits for room.
                await runtime.ask(account, "42", Deposit(1))
            journal.commit()
            await anyio.wait_all_tasks_blocked()  # The first is answered.
            tg.start_soon(ask)  # In flight at the exit, answered after it.
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask)  # Waits for room: refused at shutdown.
            await anyio.wait_all_tasks_blocked()
            clock.advance(0.5)
            assert recent(runtime) == 2.0  # One command answered in half a second.
        journal.commit()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "CommandResult",
        "RuntimeClosed",
    ]
    statistics = runtime.statistics()
    assert (statistics.commands, statistics.commands_per_s_recent) == (2, 0.0)


class LoopClock:
    """The runtime's clock read from the event loop's (trio's mock clock, in these tests),
    counting the reads: the sampler reads it as it samples."""

    def __init__(self) -> None:
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def test_the_sampler_samples_while_commands_run_and_sleeps_while_the_runtime_is_idle() -> None:
    # On trio's mock clock, whose time jumps to the next deadline once every task waits: the
    # only event loop whose clock a test can move. What the sampler does is the same code on
    # asyncio; the figure read from its samples is tested on both above.
    clock = LoopClock()

    async def main() -> None:
        async with MemoryJournal() as journal, Runtime(journal, clock=clock) as runtime:
            await _deposits(runtime, 100)
            await anyio.sleep(1.6)  # Sampled while it falls idle, at 0.25 s and 0.5 s.
            # Not read meanwhile: only the sampler's samples say that the 100 commands were
            # answered before the last second began.
            assert recent(runtime) == 0.0
            reads = clock.reads
            await anyio.sleep(3_600)  # An idle hour, in which the sampler never wakes.
            assert clock.reads == reads
            await _deposits(runtime, 50)  # The first of them wakes it with a sample.
            await anyio.sleep(0.5)
            # The count stayed at 100 from the first sample of the idle hour to the first of
            # the 50 commands: the rate is exact, not spread over the hour.
            assert recent(runtime) == 50.0
            await anyio.sleep(1.0)
            assert recent(runtime) == 0.0

    anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )


class FailingLoopClock(LoopClock):
    """A LoopClock whose ``now`` raises while ``failing`` is set."""

    failing = False

    def now(self) -> float:
        if self.failing:
            raise OSError("the clock failed")
        return super().now()


def test_a_clock_that_fails_costs_samples_not_commands_nor_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The command that wakes the sampler takes its sample: a clock that fails then must not
    # fail that command (which reads no clock of its own), leave its actor among the busy
    # ones without a slot or the sampler asleep for good; nor must the sampler's own
    # readings end the runtime's tasks. The clock's error reaches statistics(), which reads
    # it too, and the log. On trio's mock clock, as the test above.
    clock = FailingLoopClock()

    async def main() -> None:
        async with MemoryJournal() as journal, Runtime(journal, clock=clock) as runtime:
            await _deposits(runtime, 10)
            await anyio.sleep(1.6)  # Idle: the sampler sleeps until a command wakes it.
            clock.failing = True
            try:
                await _deposits(runtime, 1)
                await anyio.sleep(1.0)  # Sampled (it was woken), the clock failing each time.
                with pytest.raises(OSError, match="the clock failed"):
                    runtime.statistics()
            finally:
                clock.failing = False
            statistics = runtime.statistics()
            assert (statistics.busy_actors, statistics.commands_in_flight) == (0, 0)
            assert statistics.commands == 11
            await anyio.sleep(2.0)
            await _deposits(runtime, 20)
            await anyio.sleep(0.5)
            assert recent(runtime) == 20.0  # The sampler took its samples again.
            await anyio.sleep(1.0)
            assert recent(runtime) == 0.0

    anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )
    # Logged with its traceback once, the later failures at debug level.
    [record] = [r for r in caplog.records if "commands_per_s_recent" in r.getMessage()]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "the clock failed"


# A timeline: steps of (seconds to advance, commands answered then, whether a sample is taken
# then, as the sampler or a read in the event loop takes one).
steps = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.1, 0.125, 0.25, 0.3, 0.7, 1.0, 2.5]),
        st.integers(min_value=0, max_value=50),
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


@given(steps=steps)
# Idle as densely sampled as samples are kept: the one at the window's start is needed.
@example(steps=[(1.0, 10, True)] + [(0.125, 0, True)] * 8)
@example(steps=[(1.0, 0, True)] + [(0.13, 1, True), (0.05, 1, True)] * 12)
def test_the_rate_is_read_between_the_samples_around_the_window_start(
    steps: list[tuple[float, int, bool]],
) -> None:
    # Samples are kept at least 1/8 s apart (one at the same instant replaces the last), and
    # enough of them to reach back past the window's start. The count at the start is read
    # between the samples around it, so the rate lies between the commands answered since
    # the later one and those answered since the earlier one: exact when no command was
    # answered between them.
    rate = RecentRate()
    now, commands = START_S, 0
    kept: list[tuple[float, int]] = []  # Every sample kept, none forgotten.
    for advance, count, sample in steps:
        now += advance
        commands += count
        if sample:
            rate.note(now, commands)
            if kept and now == kept[-1][0]:
                kept[-1] = (now, commands)
            elif not kept or now - kept[-1][0] >= 0.125:
                kept.append((now, commands))
        got = rate.per_s(START_S, now, commands)
        start = now - RATE_WINDOW_S
        if start <= START_S:
            assert got == (commands / (now - START_S) if now > START_S else 0.0)
            continue
        before = max((s for s in kept if s[0] <= start), default=(START_S, 0))
        after = min((s for s in kept if s[0] > start), default=(now, commands))
        low, high = commands - after[1], commands - before[1]
        assert low - 1e-9 <= got * RATE_WINDOW_S <= high + 1e-9
        if low == high:
            assert got * RATE_WINDOW_S == low
