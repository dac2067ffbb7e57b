"""What ``statistics()`` counts of the calls refused under load: those whose ``timeout_s``
passed before they were accepted (``mailbox_timeouts``) and the ``tell_nowait`` calls refused
for a full mailbox or a full outbox. Each refusal is counted once, and nothing else is: not a
caller cancelled while it waited, nor one refused because the runtime shut down."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from journals import MemoryJournal, NewEvent
from runtime import (
    EntityStopped,
    MailboxFull,
    MailboxTimeout,
    RestartPolicy,
    Runtime,
    RuntimeClosed,
)
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, Explode, account
from .test_runtime_manual_journal import ManualJournal
from .test_supervisor import poisoned


def refusals(runtime: Runtime) -> tuple[int, int, int]:
    statistics = runtime.statistics()
    return (
        statistics.mailbox_timeouts,
        statistics.mailbox_full_refusals,
        statistics.outbox_full_refusals,
    )


async def _ask(runtime: Runtime, entity_id: str, outcomes: list[Any]) -> None:
    try:
        outcomes.append(await runtime.ask(account, entity_id, Deposit(1)))
    except (MailboxTimeout, RuntimeClosed) as error:
        outcomes.append(error)


@pytest.mark.anyio
async def test_calls_whose_timeout_passed_waiting_for_room_are_counted_once_each() -> None:
    journal = ManualJournal()  # Nothing is durable until the test commits it.
    outcomes: list[Any] = []
    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(_ask, runtime, "42", outcomes)  # Holds the one slot.
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxTimeout, match="was not executed") as ask_timeout:
            await runtime.ask(account, "42", Deposit(2), timeout_s=0)
        with pytest.raises(MailboxTimeout):
            await runtime.tell(account, "42", Deposit(3), timeout_s=0)
        with pytest.raises(MailboxTimeout):
            await runtime.state(account, "42", timeout_s=0.001)
        assert ask_timeout.value.waited_for == "room"
        assert refusals(runtime) == (3, 0, 0)
        # A caller cancelled while it waits for room is no timeout, even with a deadline.
        with anyio.move_on_after(0.001):
            await runtime.ask(account, "42", Deposit(4), timeout_s=30)
        assert refusals(runtime) == (3, 0, 0)
        journal.commit()
    assert len(outcomes) == 1
    assert refusals(runtime) == (3, 0, 0)


@pytest.mark.anyio
async def test_callers_refused_at_shutdown_while_waiting_for_room_are_not_timeouts() -> None:
    journal = ManualJournal()
    outcomes: list[Any] = []
    async with anyio.create_task_group() as tg:
        async with Runtime(journal, mailbox_bound=1, shutdown_timeout_s=0) as runtime:
            tg.start_soon(_ask, runtime, "42", outcomes)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_ask, runtime, "42", outcomes)  # Waits for room.
            await anyio.wait_all_tasks_blocked()
            assert runtime.statistics().callers_waiting_for_room == 1
        journal.commit()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "CommandResult",
        "RuntimeClosed",
    ]
    assert refusals(runtime) == (0, 0, 0)


@pytest.mark.anyio
async def test_timeouts_of_every_wait_before_a_command_runs_are_counted() -> None:
    clock = ManualClock()  # Never advanced: a backoff lasts until the runtime exits.
    policy = RestartPolicy(backoff_initial_s=5)
    async with (
        ManualJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as runtime,
    ):
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode())
        with pytest.raises(MailboxTimeout) as restart:
            await runtime.ask(account, "42", Deposit(1), timeout_s=0)
        assert restart.value.waited_for == "restart"
        assert refusals(runtime) == (1, 0, 0)
        # Cancelled while it waits out the backoff: no timeout.
        with anyio.move_on_after(0.001):
            await runtime.ask(account, "42", Deposit(1), timeout_s=30)
        assert refusals(runtime) == (1, 0, 0)


@pytest.mark.anyio
async def test_tell_nowait_refusals_are_counted_by_what_was_full() -> None:
    journal = ManualJournal()
    outcomes: list[Any] = []
    async with (
        Runtime(journal, mailbox_bound=1, outbox_bound=1) as runtime,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_ask, runtime, "42", outcomes)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxFull, match="the mailbox of 'account-42' is full"):
            runtime.tell_nowait(account, "42", Deposit(2))
        assert refusals(runtime) == (0, 1, 0)
        # Queued (their entities are not live): one handed to the idle deliverer, one kept.
        runtime.tell_nowait(account, "7", Deposit(3))
        runtime.tell_nowait(account, "8", Deposit(4))
        with pytest.raises(MailboxFull, match="tell_nowait queue is full"):
            runtime.tell_nowait(account, "9", Deposit(5))
        assert refusals(runtime) == (0, 1, 1)
        await anyio.wait_all_tasks_blocked()
        while journal.pending:
            journal.commit()
            await anyio.wait_all_tasks_blocked()
    # Refused because the runtime has shut down: no room was missing.
    with pytest.raises(RuntimeClosed):
        runtime.tell_nowait(account, "42", Deposit(6))
    assert refusals(runtime) == (0, 1, 1)
    assert runtime.statistics().commands == 3


def stopped_refusals(runtime: Runtime) -> int:
    return runtime.statistics().entity_stopped_refusals


async def _refused_or_not(
    runtime: Runtime, how: str, outcomes: list[Any], aggregate: Any = account
) -> None:
    """One call to entity 42 (an Explode with ``how`` "explode"), its outcome in ``outcomes``."""
    try:
        if how == "explode":
            await runtime.ask(aggregate, "42", Explode())
        elif how == "ask":
            await runtime.ask(aggregate, "42", Deposit(1))
        elif how == "tell":
            await runtime.tell(aggregate, "42", Deposit(1))
        else:
            await runtime.state(aggregate, "42")
        outcomes.append(how)
    except (EntityStopped, RuntimeClosed, RuntimeError, ValueError) as error:
        outcomes.append(type(error).__name__)


@pytest.mark.anyio
async def test_calls_refused_for_a_stopped_entity_are_counted_once_each() -> None:
    policy = RestartPolicy(max_restarts=0)  # The first crash stops the entity.
    async with ManualJournal() as journal, Runtime(journal, restart_policy=policy) as runtime:
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode())
        assert stopped_refusals(runtime) == 0  # The crash is its caller's, not a refusal.
        with pytest.raises(EntityStopped, match="was stopped after more crashes"):
            await runtime.ask(account, "42", Deposit(1))
        with pytest.raises(EntityStopped):
            await runtime.tell(account, "42", Deposit(2))
        with pytest.raises(EntityStopped):
            await runtime.state(account, "42", timeout_s=1)
        assert stopped_refusals(runtime) == 3
        # Refused at delivery: no caller sees it, the log and outbox_undelivered do.
        runtime.tell_nowait(account, "42", Deposit(3))
        await anyio.wait_all_tasks_blocked()
        statistics = runtime.statistics()
        assert (statistics.entity_stopped_refusals, statistics.outbox_undelivered) == (4, 1)
        assert statistics.mailbox_timeouts == 0
        # Called in a scope cancelled already. An ask is refused before it would first
        # yield; a tell's command is admitted in a task of its own, and its caller may get
        # its cancellation instead of the refusal (on asyncio it does): only a refusal its
        # caller sees is counted.
        seen: list[str] = []
        for how in ["ask", "tell"]:
            with anyio.CancelScope() as scope:
                scope.cancel()
                try:
                    if how == "ask":
                        await runtime.ask(account, "42", Deposit(2))
                    else:
                        await runtime.tell(account, "42", Deposit(2))
                except EntityStopped:
                    seen.append(how)
        assert seen[:1] == ["ask"]
        assert stopped_refusals(runtime) == 4 + len(seen)
        runtime.reset(account, "42")
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "42", Deposit(4))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert stopped_refusals(runtime) == 4 + len(seen)
    # After the exit the runtime refuses with RuntimeClosed, whatever the entity.
    with pytest.raises(RuntimeClosed):
        await runtime.ask(account, "42", Explode())
    assert stopped_refusals(runtime) == 4 + len(seen)


@pytest.mark.anyio
async def test_callers_refused_as_their_restart_backoff_ends_are_counted_as_they_see_it() -> None:
    clock = ManualClock()
    # The restart's activation crashes again (its stored event cannot be folded), which stops
    # the entity: the caller that activates gets the crash, the others EntityStopped.
    policy = RestartPolicy(max_restarts=1, backoff_initial_s=5)
    outcomes: list[Any] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as runtime,
        anyio.create_task_group() as tg,
    ):
        await journal.append("poisoned-42", [NewEvent("poisoned.C/1", {})], expected_version=0)
        with pytest.raises(ValueError, match="cannot evolve"):
            await runtime.ask(poisoned, "42", object())
        # Two of each, so that each kind of call is refused whichever one activates.
        for how in ["ask", "tell", "state"] * 2:
            tg.start_soon(_refused_or_not, runtime, how, outcomes, poisoned)
        # Callers that go away while they sleep out the backoff see no refusal.
        cancelled: list[anyio.CancelScope] = []
        for how in ["ask", "tell", "state"]:
            scope = anyio.CancelScope()
            cancelled.append(scope)
            tg.start_soon(_in_scope, scope, _refused_or_not, runtime, how, outcomes, poisoned)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(MailboxTimeout, match="restart backoff"):
            await runtime.tell(poisoned, "42", object(), timeout_s=0)
        assert runtime.statistics().callers_waiting_for_restart == 9
        for scope in cancelled:
            scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert runtime.statistics().callers_waiting_for_restart == 6
        clock.advance(5)
        await anyio.wait_all_tasks_blocked()
    assert sorted(outcomes) == ["EntityStopped"] * 5 + ["ValueError"]
    statistics = runtime.statistics()
    assert (statistics.entity_stopped_refusals, statistics.mailbox_timeouts) == (5, 1)
    assert (statistics.stopped_entities, statistics.crashes) == (1, 2)


async def _in_scope(scope: anyio.CancelScope, function: Any, *arguments: Any) -> None:
    with scope:
        await function(*arguments)


@pytest.mark.anyio
async def test_callers_refused_at_shutdown_while_sleeping_out_a_backoff_are_not_counted() -> None:
    clock = ManualClock()  # Never advanced: only the shutdown ends the backoff.
    policy = RestartPolicy(max_restarts=1, backoff_initial_s=5)
    outcomes: list[Any] = []
    async with MemoryJournal() as journal, anyio.create_task_group() as tg:
        runtime = Runtime(journal, clock=clock, restart_policy=policy, shutdown_timeout_s=0)
        async with runtime:
            with pytest.raises(RuntimeError, match="boom"):
                await runtime.ask(account, "42", Explode())
            for how in ["explode", "ask", "tell", "state"]:
                tg.start_soon(_refused_or_not, runtime, how, outcomes)
            runtime.tell_nowait(account, "42", Deposit(2))
            await anyio.wait_all_tasks_blocked()
    assert outcomes == ["RuntimeClosed"] * 4
    statistics = runtime.statistics()
    assert (statistics.entity_stopped_refusals, statistics.outbox_undelivered) == (0, 1)


async def _tell_cancelled_as_it_is_refused(checkpoints: int) -> tuple[int, list[str]]:
    """A tell waits for a broken actor's command to settle, its entity stopped meanwhile;
    the command settles and, ``checkpoints`` later, the tell's caller is cancelled. Answers
    the refusals counted and those its caller saw."""
    seen: list[str] = []
    journal = ManualJournal()
    policy = RestartPolicy(max_restarts=0)
    async with (
        Runtime(journal, restart_policy=policy, mailbox_bound=2) as runtime,
        anyio.create_task_group() as tg,
    ):

        async def tell() -> None:
            try:
                await runtime.tell(account, "42", Deposit(2))
            except EntityStopped:
                seen.append("EntityStopped")

        tg.start_soon(runtime.ask, account, "42", Deposit(1))  # Held until committed.
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode())  # Stops the entity.
        scope = anyio.CancelScope()
        tg.start_soon(_in_scope, scope, tell)  # Waits for the held command to settle.
        await anyio.wait_all_tasks_blocked()
        journal.commit()
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        scope.cancel()
    return stopped_refusals(runtime), seen


@pytest.mark.anyio
async def test_a_tell_cancelled_as_its_entity_is_found_stopped_counts_what_its_caller_saw() -> None:
    # Its command is admitted in a task of its own: as the refusal comes, the caller may be
    # cancelled, and get its cancellation instead of the refusal.
    outcomes = set()
    for checkpoints in range(8):
        counted, seen = await _tell_cancelled_as_it_is_refused(checkpoints)
        assert counted == len(seen)
        outcomes.add(counted)
    assert outcomes == {0, 1}  # Some were cancelled in time, some refused.
