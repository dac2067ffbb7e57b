"""How much an activation beyond ``max_live_actors`` looks at to find idle actors, and the
order in which it evicts them once busy actors were passed over."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from runtime import CommandRejected, LifecycleEvent, MailboxTimeout, Runtime
from runtime._actor import Actor
from runtime.testing import ManualClock

from .journal_doubles import ReorderedAnswers
from .test_passivation import settle
from .test_runtime_bank import Command, Deposit, Open, Withdraw, account
from .test_runtime_manual_journal import ManualJournal


def count_looks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every ``Actor.is_idle`` call (one per actor an eviction looks at) in ``[0]``."""
    looks = [0]
    is_idle = Actor.is_idle

    def counted(actor: Actor) -> bool:
        looks[0] += 1
        return is_idle(actor)

    monkeypatch.setattr(Actor, "is_idle", counted)
    return looks


def passivations_into(names: list[str]) -> Callable[[LifecycleEvent], None]:
    def record(notice: LifecycleEvent) -> None:
        if notice.kind == "passivated":
            names.append(notice.stream_id.removeprefix("account-"))

    return record


def hold(journal: ReorderedAnswers, entities: list[str]) -> anyio.Event:
    """Hold the answers to the first commands of ``entities`` (committed or not) until the
    event returned is set: their actors stay busy."""
    gate = anyio.Event()
    for entity in entities:
        journal.answers[(f"account-{entity}", 1)] = gate
    return gate


async def ask_in_turn(task_group: TaskGroup, runtime: Runtime, entities: list[str]) -> None:
    """Send each entity its first command, one after another: trio runs the tasks started at
    once in no promised order, and these tests depend on the order of use."""
    for entity in entities:
        task_group.start_soon(runtime.ask, account, entity, Open(entity))
        await anyio.wait_all_tasks_blocked()


@pytest.mark.anyio
async def test_a_burst_of_activations_while_every_actor_is_busy_looks_at_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each activation beyond the bound used to look at every live actor, all busy: a burst of
    # N activations over L live actors looked at about N x L of them (1,335 here).
    bound = burst = 30
    journal = ReorderedAnswers()
    passivated: list[str] = []
    looks = count_looks(monkeypatch)
    with anyio.fail_after(10):
        async with (
            Runtime(
                journal,
                max_live_actors=bound,
                on_lifecycle=passivations_into(passivated),
                shutdown_timeout_s=0.5,  # should an assertion fail, held appends are not waited for
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            await ask_in_turn(tg, rt, [f"old{number}" for number in range(bound)])
            assert looks[0] == 0  # within the bound: no eviction looks at anything
            await ask_in_turn(tg, rt, [f"new{number}" for number in range(burst)])
            assert looks[0] <= bound + burst  # linear in the actors, not their product
            statistics = rt.statistics()
            assert statistics.live_actors == statistics.busy_actors == bound + burst
            assert passivated == []
            # Answered one by one, in the order they were used: each goes idle beyond the bound
            # and is evicted then, the least recently used idle actor.
            for _ in range(bound + burst):
                journal.commit(1)
                await anyio.wait_all_tasks_blocked()
            assert passivated == [f"old{number}" for number in range(bound)]
            assert rt.statistics().live_actors == bound


@pytest.mark.anyio
async def test_busy_actors_passed_over_are_not_looked_at_again_by_the_next_activation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Busy actors used least recently, idle ones behind them: each activation used to look at
    # every busy one before it found an idle one (K x (K + 1) looks, 240 here).
    half = 15
    journal = ReorderedAnswers()
    passivated: list[str] = []
    busy = [f"busy{number}" for number in range(half)]
    idle = [f"idle{number}" for number in range(half)]
    gate = hold(journal, busy)
    looks = count_looks(monkeypatch)
    with anyio.fail_after(10):
        async with (
            Runtime(
                journal,
                max_live_actors=2 * half,
                on_lifecycle=passivations_into(passivated),
                shutdown_timeout_s=0.5,
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            await ask_in_turn(tg, rt, busy + idle)
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert rt.statistics().busy_actors == half
            looks[0] = 0
            await ask_in_turn(tg, rt, [f"new{number}" for number in range(half)])
            assert looks[0] <= 3 * half  # the live actors and the burst, each about once
            # The idle actors went in the order they were used, none of the busy ones did.
            assert passivated == idle
            gate.set()
            journal.commit()


@pytest.mark.anyio
async def test_an_actor_found_busy_by_an_eviction_counts_as_used_then() -> None:
    # "a" was used before "b" and "c", but its command was still in flight when "d" was
    # activated, after "c" had gone idle: "c" has been idle longer, so it goes first.
    journal = ReorderedAnswers()
    passivated: list[str] = []
    gate = hold(journal, ["a"])
    with anyio.fail_after(5):
        async with (
            Runtime(
                journal,
                max_live_actors=3,
                on_lifecycle=passivations_into(passivated),
                shutdown_timeout_s=0.5,
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            await ask_in_turn(tg, rt, ["a", "b", "c"])
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            await ask_in_turn(tg, rt, ["d"])
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert passivated == ["b"]  # the least recently used idle one; "a" is busy
            gate.set()
            await anyio.wait_all_tasks_blocked()
            assert passivated == ["b"]  # within the bound again: "a" stays live, idle
            for entity in "ef":
                await ask_in_turn(tg, rt, [entity])
                journal.commit()
                await anyio.wait_all_tasks_blocked()
            assert passivated == ["b", "c", "a"]
            assert rt.statistics().live_actors == 3


@pytest.mark.anyio
async def test_the_sweeper_counts_an_actor_found_busy_by_an_eviction_as_used_then() -> None:
    # "a" was admitted at 0 s and its command held; "c" went idle within the bound, so the
    # activation of "b" at 30 s looked at the actors and found "a" busy. Idle from 30 s on,
    # "a" goes a whole idle period after that, not at the next sweep.
    clock = ManualClock()
    journal = ReorderedAnswers()
    passivated: list[str] = []
    gate = hold(journal, ["a"])
    with anyio.fail_after(5):
        async with (
            Runtime(
                journal,
                clock=clock,
                passivate_after_s=10,
                max_live_actors=2,
                on_lifecycle=passivations_into(passivated),
                shutdown_timeout_s=0.5,
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            await ask_in_turn(tg, rt, ["a"])
            await settle(clock, 27.5, 2.5)
            await ask_in_turn(tg, rt, ["c"])
            journal.commit()
            await settle(clock, 2.5, 2.5)
            await ask_in_turn(tg, rt, ["b"])
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert passivated == ["c"]  # the least recently used idle actor
            gate.set()
            await anyio.wait_all_tasks_blocked()
            await settle(clock, 10.0, 2.5)
            assert passivated == ["c"]
            await settle(clock, 2.5, 2.5)
            assert sorted(passivated) == ["a", "b", "c"]


@pytest.mark.anyio
@pytest.mark.parametrize("bound", [5, None])
@pytest.mark.parametrize("seed", range(2))
async def test_no_idle_actor_is_left_beyond_the_bound_or_unseen_under_random_traffic(
    bound: int | None, seed: int
) -> None:
    # Commands held and answered in random batches, mailboxes of two (callers wait for room,
    # or give up at once), a journal without room at times, rejections, state reads, sweeps:
    # after every step, no actor is idle while the live ones are beyond the bound, nor while
    # an activation would not look for idle ones; and the actors are in the order of their
    # ticks, which the idle sweeper's early stop relies on.
    generator = random.Random(seed)
    clock = ManualClock()
    journal = ManualJournal(start_appends=True)

    async def send(entity: str, command: Command | None, timeout_s: float | None) -> None:
        with contextlib.suppress(CommandRejected, MailboxTimeout):
            if command is None:
                await rt.state(account, entity, timeout_s=timeout_s)
            else:
                await rt.ask(account, entity, command, timeout_s=timeout_s)

    with anyio.fail_after(20):
        async with (
            Runtime(
                journal,
                clock=clock,
                max_live_actors=bound,
                mailbox_bound=2,
                passivate_after_s=10,
                shutdown_timeout_s=0.5,
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            for _ in range(300):
                roll = generator.random()
                if roll < 0.5:
                    entity = f"e{generator.randrange(15)}"
                    command = generator.choice([Deposit(1), Withdraw(1), None])
                    tg.start_soon(send, entity, command, generator.choice([None, 0]))
                elif roll < 0.85:
                    journal.commit(generator.randrange(journal.pending + 1))
                elif roll < 0.9:
                    journal.full = not journal.full
                    journal.make_room()
                else:
                    clock.advance(2.5)
                # A few turns of the event loop, not a wait until every task is blocked (that
                # polls every 0.1 s on asyncio): the rules hold at every turn.
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
                actors = list(rt._actors.values())
                if bound is not None and (len(actors) > bound or rt._all_busy_at == rt._idle_kept):
                    assert [actor.stream_id for actor in actors if actor.is_idle()] == []
                ticks = [actor.tick for actor in actors]
                assert ticks == sorted(ticks)
            assert rt.statistics().passivations > 20
            journal.full = False
            journal.make_room()
            journal.commit()
