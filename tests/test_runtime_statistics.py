"""What ``statistics()`` answers at the edges of a runtime's life and under load: uptime
before the runtime has started, the outbox's commands waiting for room, and figures that
stay exact while they are kept as the actors change rather than counted per call."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Self

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import MemoryJournal
from runtime import (
    EntityStopped,
    LifecycleEvent,
    MailboxFull,
    MailboxTimeout,
    RestartPolicy,
    Runtime,
    RuntimeClosed,
    RuntimeStatistics,
)
from runtime.testing import ManualClock

from .examples import examples
from .journal_doubles import SlowActivations
from .test_runtime_bank import Command, Deposit, Explode, Noop, Withdraw, account
from .test_runtime_manual_journal import ManualJournal
from .unwalked import Unwalked

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


@pytest.mark.anyio
async def test_statistics_look_at_the_busy_actors_not_at_every_live_one() -> None:
    journal = ManualJournal()
    async with Runtime(journal, mailbox_bound=2) as runtime, anyio.create_task_group() as tg:
        for number in range(200):
            tg.start_soon(runtime.ask, account, str(number), Deposit(1))
        await anyio.wait_all_tasks_blocked()
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):  # A full mailbox and a caller waiting for room.
            tg.start_soon(runtime.ask, account, "hot", Deposit(1))
        tg.start_soon(runtime.ask, account, "7", Deposit(1))
        await anyio.wait_all_tasks_blocked()
        actors = runtime._actors = Unwalked("the live actors", runtime._actors)
        actors.armed = True
        statistics = runtime.statistics()
        actors.armed = False
        assert (statistics.live_actors, statistics.busy_actors) == (201, 2)
        assert (statistics.commands_in_flight, statistics.mailbox_depth_max) == (3, 2)
        assert statistics.callers_waiting_for_room == 1
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        actors.armed = True
        statistics = runtime.statistics()
        actors.armed = False
        assert (statistics.busy_actors, statistics.commands_in_flight) == (0, 0)
        assert (statistics.commands, statistics.callers_waiting_for_room) == (204, 0)


def walked(runtime: Runtime) -> tuple[int, int, int, int, int]:
    """The figures of the live actors as a walk over all of them finds them: live, busy,
    slots taken, the deepest mailbox and the callers waiting for room (not the outbox's)."""
    actors = list(runtime._actors.values())
    waiting = [
        entry
        for actor in actors
        if actor.waiting is not None
        for entry in actor.waiting.mailbox
        if not entry[2] and not entry[3]
    ]
    return (
        len(actors),
        sum(1 for actor in actors if actor.in_flight),
        sum(actor.in_flight for actor in actors),
        max((actor.in_flight for actor in actors), default=0),
        len(waiting),
    )


def kept(runtime: Runtime) -> tuple[int, int, int, int, int]:
    statistics = runtime.statistics()
    return (
        statistics.live_actors,
        statistics.busy_actors,
        statistics.commands_in_flight,
        statistics.mailbox_depth_max,
        statistics.callers_waiting_for_room,
    )


COMMANDS: list[Command] = [Deposit(1), Withdraw(1_000), Explode(), Noop()]
calls = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),  # the entity
        st.integers(min_value=0, max_value=len(COMMANDS) - 1),
        st.sampled_from(["ask", "tell", "tell_nowait", "state"]),
        st.sampled_from([None, 0.0, 0.001]),  # timeout_s
        st.sampled_from([None, 0, 1, 3]),  # cancelled after this many checkpoints
    ),
    min_size=1,
    max_size=40,
)


async def _run_calls(
    call_list: list[tuple[int, int, str, float | None, int | None]],
    mailbox_bound: int,
    max_live_actors: int | None,
) -> None:
    policy = RestartPolicy(max_restarts=2, backoff_initial_s=0)
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal,
            mailbox_bound=mailbox_bound,
            max_live_actors=max_live_actors,
            restart_policy=policy,
        ) as runtime,
    ):
        # The refusals as callers saw them.
        refused = {"timeouts": 0, "mailbox full": 0, "outbox full": 0, "stopped": 0}

        async def call(
            entity: int, command: int, how: str, timeout_s: float | None, cancel: int | None
        ) -> None:
            entity_id = str(entity)
            with anyio.CancelScope() as scope:
                if cancel is not None:
                    for _ in range(cancel):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()
                try:
                    if how == "ask":
                        await runtime.ask(
                            account, entity_id, COMMANDS[command], timeout_s=timeout_s
                        )
                    elif how == "tell":
                        await runtime.tell(
                            account, entity_id, COMMANDS[command], timeout_s=timeout_s
                        )
                    elif how == "tell_nowait":
                        runtime.tell_nowait(account, entity_id, COMMANDS[command])
                    else:
                        await runtime.state(account, entity_id, timeout_s=timeout_s)
                except MailboxTimeout:
                    refused["timeouts"] += 1
                except MailboxFull as error:
                    refused["outbox full" if "queue is full" in str(error) else "mailbox full"] += 1
                except EntityStopped:
                    refused["stopped"] += 1
                except Exception:
                    pass  # A rejection or a crash: counted elsewhere.

        async with anyio.create_task_group() as tg:
            for entity, command, how, timeout_s, cancel in call_list:
                tg.start_soon(call, entity, command, how, timeout_s, None)
                if cancel is not None:
                    tg.start_soon(call, entity, command, how, timeout_s, cancel)
            for _ in range(200):
                assert kept(runtime) == walked(runtime)
                await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()
        assert kept(runtime) == walked(runtime)
        assert kept(runtime)[1:] == (0, 0, 0, 0)
        statistics = runtime.statistics()
        counted = (
            statistics.mailbox_timeouts,
            statistics.mailbox_full_refusals,
            statistics.outbox_full_refusals,
            # Every command of the outbox not delivered here was refused for its stopped
            # entity, which no caller sees.
            statistics.entity_stopped_refusals - statistics.outbox_undelivered,
        )
        assert counted == tuple(refused.values())
        held = (
            statistics.callers_waiting_for_restart,
            statistics.callers_waiting_for_journal,
            statistics.appends_waiting_for_journal,
        )
        assert held == (0, 0, 0)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=examples(30), deadline=None)
@given(
    call_list=calls,
    mailbox_bound=st.integers(min_value=1, max_value=3),
    max_live_actors=st.sampled_from([None, 2]),
)
def test_the_figures_kept_of_the_actors_are_those_a_walk_over_them_finds(
    backend: str,
    call_list: list[tuple[int, int, str, float | None, int | None]],
    mailbox_bound: int,
    max_live_actors: int | None,
) -> None:
    anyio.run(_run_calls, call_list, mailbox_bound, max_live_actors, backend=backend)


@pytest.mark.anyio
async def test_statistics_count_the_stopped_entities_without_walking_every_crashed_one() -> None:
    clock = ManualClock()
    policy = RestartPolicy(max_restarts=1, backoff_initial_s=0, cooldown_s=10)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        for number in range(100):  # Crashed once: remembered, not stopped.
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, str(number), Explode())
        for _ in range(2):  # Crashed twice: stopped.
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "stopped", Explode())
        table = rt._supervised = Unwalked("the supervisor's crashed entities", rt._supervised)
        table.armed = True
        assert rt.statistics().stopped_entities == 1
        clock.advance(10)  # Its cool-down is over.
        assert rt.statistics().stopped_entities == 0
        table.armed = False


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=examples(40), deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["crash", "ask", "reset", "advance"]),
            st.integers(min_value=0, max_value=3),  # the entity, or seconds to advance
        ),
        min_size=1,
        max_size=30,
    ),
    cooldown_s=st.sampled_from([None, 0, 2, 5]),
    max_restarts=st.integers(min_value=0, max_value=2),
    sweeper=st.booleans(),
)
def test_the_stopped_entities_counted_are_those_a_walk_over_the_supervisor_finds(
    backend: str,
    steps: list[tuple[str, int]],
    cooldown_s: float | None,
    max_restarts: int,
    sweeper: bool,
) -> None:
    anyio.run(_run_steps, steps, cooldown_s, max_restarts, sweeper, backend=backend)


async def _run_steps(
    steps: list[tuple[str, int]], cooldown_s: float | None, max_restarts: int, sweeper: bool
) -> None:
    clock = ManualClock()
    policy = RestartPolicy(
        max_restarts=max_restarts, period_s=4, backoff_initial_s=0, cooldown_s=cooldown_s
    )
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal,
            clock=clock,
            restart_policy=policy,
            passivate_after_s=1 if sweeper else None,
        ) as runtime,
    ):
        for what, number in steps:
            if what == "advance":
                for _ in range(number * 4):
                    clock.advance(0.25)
                    await anyio.wait_all_tasks_blocked()
            elif what == "reset":
                runtime.reset(account, str(number))
            else:
                with contextlib.suppress(Exception):
                    command = Explode() if what == "crash" else Deposit(1)
                    await runtime.ask(account, str(number), command)
            now = clock.now()
            walk = sum(1 for record in runtime._supervised.values() if record.is_stopped(now))
            assert runtime.statistics().stopped_entities == walk


@pytest.mark.anyio
async def test_an_entity_stopped_again_and_again_is_remembered_once() -> None:
    clock = ManualClock()
    policy = RestartPolicy(max_restarts=0, cooldown_s=1)  # Each crash stops it for 1 s.
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        for _ in range(50):
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "42", Explode())
            clock.advance(1)
        # Never asked for statistics meanwhile: what counts the stopped entities stays small.
        assert (len(rt._stopped), len(rt._cooldowns)) == (1, 1)
        assert rt.statistics().stopped_entities == 0


@pytest.mark.anyio
async def test_an_observer_of_a_stopping_crash_counts_the_entity_stopped() -> None:
    seen: list[tuple[str, int]] = []

    def observe(notice: LifecycleEvent) -> None:
        seen.append((notice.kind, runtime.statistics().stopped_entities))

    policy = RestartPolicy(max_restarts=0)  # One crash stops an entity.
    async with MemoryJournal() as journal:
        runtime = Runtime(journal, restart_policy=policy, on_lifecycle=observe)
        async with runtime:
            with pytest.raises(RuntimeError, match="boom"):
                await runtime.ask(account, "42", Explode())
            runtime.reset(account, "42")
    assert seen == [("started", 0), ("crashed", 1), ("stopped", 1), ("reset", 0)]


@pytest.mark.anyio
async def test_statistics_read_from_another_thread_under_load_answer_and_change_nothing() -> None:
    # A metrics exporter reads them from its own thread while the event loop works.
    clock = ManualClock()
    policy = RestartPolicy(max_restarts=0, cooldown_s=1)
    journal = ManualJournal()
    async with Runtime(journal, clock=clock, mailbox_bound=2, restart_policy=policy) as runtime:
        for number in range(20):  # Stopped entities, whose cool-downs end below.
            with pytest.raises(RuntimeError, match="boom"):
                await runtime.ask(account, f"stopped-{number}", Explode())
        clock.advance(1)
        cooldowns = len(runtime._cooldowns)
        done = threading.Event()
        errors: list[BaseException] = []
        read: list[RuntimeStatistics] = []

        def reader() -> None:
            while not done.is_set():
                try:
                    read.append(runtime.statistics())
                except BaseException as error:
                    errors.append(error)
                    return
                time.sleep(0.0005)  # Leaves the interpreter lock to the event loop mostly.

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            async with anyio.create_task_group() as tg:
                for round_ in range(3):  # Actors activate, fill their mailboxes and drain.
                    for number in range(40):
                        tg.start_soon(runtime.ask, account, str(number % 7 + round_), Deposit(1))
                    await anyio.wait_all_tasks_blocked()
                    while journal.pending:
                        journal.commit()
                        await anyio.wait_all_tasks_blocked()
        finally:
            done.set()
            await anyio.to_thread.run_sync(thread.join)
        assert errors == []
        assert read
        assert all(statistics.stopped_entities == 0 for statistics in read)
        # Reads from another thread leave the supervisor's record to the event loop.
        assert len(runtime._cooldowns) == cooldowns
        assert runtime.statistics().stopped_entities == 0
        assert len(runtime._cooldowns) == 0


@pytest.mark.anyio
async def test_an_activation_that_ends_after_the_exit_is_neither_counted_nor_announced() -> None:
    notices: list[LifecycleEvent] = []
    errors: list[BaseException] = []
    async with SlowActivations() as journal:  # Activations wait for the gate.
        runtime = Runtime(journal, shutdown_timeout_s=0.05, on_lifecycle=notices.append)

        async def ask() -> None:
            try:
                await runtime.ask(account, "42", Deposit(1))
            except RuntimeClosed as error:
                errors.append(error)

        async with anyio.create_task_group() as tg:
            async with runtime:
                tg.start_soon(ask)
                await anyio.wait_all_tasks_blocked()  # Its activation waits for the gate.
            journal.gate.set()  # The replay ends once the runtime has exited.
        assert await journal.stream_version("account-42") == 0
    assert len(errors) == 1
    statistics = runtime.statistics()
    assert (statistics.activations, statistics.live_actors) == (0, 0)
    assert notices == []
