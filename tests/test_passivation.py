"""Passivation by idle time and by a live-actor bound; reactivation gives the same state."""

from __future__ import annotations

import logging
import random

import anyio
import anyio.lowlevel
import pytest

from journals import MemoryJournal
from runtime import LifecycleEvent, Runtime
from runtime.testing import ManualClock

from .journal_doubles import GatedSnapshots, HeldSnapshots, ReorderedAnswers
from .test_runtime_bank import Account, Command, Deposit, Open, Withdraw, account, make_account
from .test_runtime_manual_journal import ManualJournal


async def settle(clock: ManualClock, seconds: float, step: float) -> None:
    """Advance the clock in steps, letting the sweeper run after each."""
    for _ in range(round(seconds / step)):
        await anyio.wait_all_tasks_blocked()
        clock.advance(step)
        await anyio.wait_all_tasks_blocked()


@pytest.mark.anyio
async def test_idle_actors_are_passivated_and_reactivated_with_the_same_state() -> None:
    clock = ManualClock()
    notices: list[LifecycleEvent] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, passivate_after_s=10, on_lifecycle=notices.append) as rt,
    ):
        await rt.ask(account, "idle", Open("ada"))
        await rt.ask(account, "idle", Deposit(7))
        await rt.ask(account, "busy", Open("bob"))
        before = await rt.state(account, "idle")
        for _ in range(6):  # "busy" is used every 2.5 s, "idle" never again
            await settle(clock, 2.5, 2.5)
            await rt.ask(account, "busy", Deposit(1))
        assert [n.stream_id for n in notices if n.kind == "passivated"] == ["account-idle"]
        assert rt.statistics().live_actors == 1
        assert await rt.state(account, "idle") == before
        assert notices[-1].kind == "recovered"
        assert rt.statistics().passivations == 1


@pytest.mark.anyio
async def test_an_idle_actor_activated_before_a_busy_one_is_still_found() -> None:
    # The sweeper walks actors in order of last use and stops at the first recent one: the
    # busy actor, activated first, must have moved behind the idle one by then.
    clock = ManualClock()
    notices: list[LifecycleEvent] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, passivate_after_s=10, on_lifecycle=notices.append) as rt,
    ):
        await rt.ask(account, "busy", Open("bob"))
        await rt.ask(account, "idle", Open("ada"))
        for _ in range(6):
            await settle(clock, 2.5, 2.5)
            for _ in range(3):  # several commands per sweep period
                await rt.ask(account, "busy", Deposit(1))
        assert [n.stream_id for n in notices if n.kind == "passivated"] == ["account-idle"]
        assert rt.statistics().live_actors == 1


@pytest.mark.anyio
async def test_passivation_waits_for_the_full_idle_time() -> None:
    clock = ManualClock()
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, passivate_after_s=10) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        await settle(clock, 7.5, 2.5)
        assert rt.statistics().live_actors == 1
        await settle(clock, 5.0, 2.5)
        assert rt.statistics().live_actors == 0


@pytest.mark.anyio
async def test_the_least_recently_used_idle_actors_go_beyond_the_bound() -> None:
    passivated: list[str] = []
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal,
            max_live_actors=3,
            on_lifecycle=lambda n: (
                passivated.append(n.stream_id) if n.kind == "passivated" else None
            ),
        ) as rt,
    ):
        for entity in ["a", "b", "c"]:
            await rt.ask(account, entity, Open(entity))
        await rt.ask(account, "a", Deposit(1))  # "b" is now the least recently used
        await rt.ask(account, "d", Open("d"))
        await rt.ask(account, "e", Open("e"))
        assert passivated == ["account-b", "account-c"]
        assert rt.statistics().live_actors == 3
        assert await rt.state(account, "b") == Account("b", 0, 0)
        assert passivated == ["account-b", "account-c", "account-a"]


@pytest.mark.anyio
@pytest.mark.parametrize("start_appends", [False, True])
async def test_the_bound_holds_once_a_burst_of_first_commands_is_answered(
    start_appends: bool,
) -> None:
    # Ten entities activated at once, all busy: none can be evicted while its command is in
    # flight, so the bound is exceeded until they go idle, and not after.
    journal = ManualJournal(start_appends=start_appends)
    async with Runtime(journal, max_live_actors=3) as rt:
        async with anyio.create_task_group() as tg:
            for number in range(10):
                tg.start_soon(rt.ask, account, f"e{number}", Open(f"e{number}"))
            await anyio.wait_all_tasks_blocked()
            assert (rt.statistics().live_actors, rt.statistics().busy_actors) == (10, 10)
            journal.commit()
        statistics = rt.statistics()
        assert (statistics.live_actors, statistics.passivations) == (3, 7)
        assert statistics.commands == 10
        # One more command is one more activation, and one eviction: the bound holds.
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, account, "e10", Open("e10"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        statistics = rt.statistics()
        assert (statistics.live_actors, statistics.passivations) == (3, 8)


@pytest.mark.anyio
async def test_snapshot_on_passivation() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "a", Deposit(3))
            await rt.ask(account, "b", Open("bob"))
        snapshot = await journal.load_snapshot("account-a")
        assert snapshot is not None
        assert snapshot.version == 2
        assert snapshot.data == {"owner": "ada", "balance": 3, "deposits": 1}
        assert snapshot.metadata == {"aggregate": "account", "schema": 1}
        assert await journal.load_snapshot("account-b") is None


@pytest.mark.anyio
async def test_reactivation_equivalence_under_random_traffic() -> None:
    generator = random.Random(7)
    snapshotting = make_account(snapshot_every=5)
    expected: dict[str, Account] = {}
    async with MemoryJournal() as journal:
        async with Runtime(journal, max_live_actors=8, snapshot_on_passivation=True) as rt:
            for step in range(600):
                entity = f"e{generator.randrange(30)}"
                if entity not in expected:
                    await rt.ask(snapshotting, entity, Open(entity))
                    expected[entity] = Account(entity)
                amount = generator.randrange(1, 50)
                if generator.random() < 0.5:
                    await rt.ask(snapshotting, entity, Deposit(amount))
                    state = expected[entity]
                    expected[entity] = Account(entity, state.balance + amount, state.deposits + 1)
                elif amount <= expected[entity].balance:
                    await rt.ask(snapshotting, entity, Withdraw(amount))
                    state = expected[entity]
                    expected[entity] = Account(entity, state.balance - amount, state.deposits)
                if step % 50 == 0:
                    await anyio.lowlevel.checkpoint()  # let the snapshot writer catch up
            for entity, state in expected.items():
                assert await rt.state(snapshotting, entity) == state
            assert rt.statistics().passivations > 100
            assert rt.statistics().snapshots > 10
        async with Runtime(journal) as rt:
            for entity, state in expected.items():
                assert await rt.state(snapshotting, entity) == state


@pytest.mark.anyio
@pytest.mark.parametrize("used_at", [1.0, 1.25, 1.5, 1.75])
async def test_an_idle_actor_is_evicted_after_one_to_one_and_a_quarter_periods(
    used_at: float,
) -> None:
    # Sweeps every 1 s (four per 4 s period). Used at 1.0 (just after the first sweep) up to
    # 1.75 (just before the second): evicted by the sweep at 6.0, never by the one at 5.0,
    # which would be less than a whole period after a use at 1.25 or later.
    clock = ManualClock()
    passivated_at: list[float] = []
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal,
            clock=clock,
            passivate_after_s=4,
            on_lifecycle=lambda n: (
                passivated_at.append(clock.now()) if n.kind == "passivated" else None
            ),
        ) as rt,
    ):
        await settle(clock, used_at, 0.25)
        await rt.ask(account, "42", Open("ada"))
        await settle(clock, 5.0 - used_at, 0.25)
        assert passivated_at == []
        assert rt.statistics().live_actors == 1
        await settle(clock, 1.0, 0.25)
        assert passivated_at == [6.0]
        assert 4.0 <= passivated_at[0] - used_at <= 5.0


@pytest.mark.anyio
@pytest.mark.parametrize("start_appends", [False, True])
async def test_an_actor_beyond_the_bound_is_not_evicted_while_its_command_is_in_flight(
    start_appends: bool,
) -> None:
    # "a" is the least recently used actor when "b" is activated beyond the bound, but its
    # command is still waiting for durability: evicted now, it would be rebuilt from what is
    # durable, without that command's event, and its next command would conflict with it.
    journal = ManualJournal(start_appends=start_appends)
    notices: list[LifecycleEvent] = []
    results: dict[str, object] = {}

    async def ask(name: str, entity: str, command: Command) -> None:
        try:
            results[name] = await rt.ask(account, entity, command)
        except Exception as error:
            results[name] = error

    with anyio.fail_after(5):
        async with (
            # A short shutdown: should an assertion fail, the appends held are not waited for.
            Runtime(
                journal, max_live_actors=1, on_lifecycle=notices.append, shutdown_timeout_s=0.5
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(ask, "open a", "a", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, "open b", "b", Open("bob"))
            await anyio.wait_all_tasks_blocked()
            assert [n.kind for n in notices] == ["started", "started"]
            assert rt.statistics().live_actors == 2  # beyond the bound while both are busy
            tg.start_soon(ask, "deposit a", "a", Deposit(5))  # decided after the open
            await anyio.wait_all_tasks_blocked()
            assert journal.pending == 3
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            versions = {name: getattr(r, "version", r) for name, r in results.items()}
            assert versions == {"open a": 1, "open b": 1, "deposit a": 2}
            assert rt.statistics().activations == 2  # "a" was never rebuilt meanwhile
            # Idle now: the bound holds again.
            assert rt.statistics().live_actors == 1
            assert await rt.state(account, "a") == Account("ada", 5, 1)
    assert notices[2].kind == "passivated"


@pytest.mark.anyio
@pytest.mark.parametrize("start_appends", [False, True])
async def test_the_sweeper_leaves_an_actor_alone_while_its_command_is_in_flight(
    start_appends: bool,
) -> None:
    # The command's append is held for several idle periods: the actor was last admitted
    # long ago, but it is busy, so it must stay live (rebuilt, it would miss the event in
    # flight and the next command would conflict with it).
    clock = ManualClock()
    journal = ManualJournal(start_appends=start_appends)
    notices: list[LifecycleEvent] = []
    results: dict[str, object] = {}

    async def ask(name: str, command: Command) -> None:
        try:
            results[name] = await rt.ask(account, "42", command)
        except Exception as error:
            results[name] = error

    with anyio.fail_after(5):
        async with (
            Runtime(  # A short shutdown, as above.
                journal,
                clock=clock,
                passivate_after_s=10,
                on_lifecycle=notices.append,
                shutdown_timeout_s=0.5,
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(ask, "open", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            await settle(clock, 30.0, 2.5)  # twelve sweeps, three idle periods
            assert [n.kind for n in notices] == ["started"]
            assert rt.statistics().live_actors == 1
            tg.start_soon(ask, "deposit", Deposit(5))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            versions = {name: getattr(r, "version", r) for name, r in results.items()}
            assert versions == {"open": 1, "deposit": 2}
            assert rt.statistics().activations == 1
            # Idle from now on: it goes after a whole idle period.
            await settle(clock, 12.5, 2.5)
            assert [n.kind for n in notices] == ["started", "passivated"]
            assert notices[1].version == 2


@pytest.mark.anyio
async def test_an_entity_evicted_again_unchanged_while_its_snapshot_waits_takes_no_other() -> None:
    # Reactivated before its passivation snapshot was written, an entity found no snapshot,
    # and each eviction after that queued the same snapshot again: with entities evicted
    # faster than the disk writes, the queue filled with copies.
    async with HeldSnapshots() as journal:
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "b", Open("bob"))  # evicts "a": its snapshot at 1 waits
            for _ in range(3):
                assert await rt.state(account, "a") == Account("ada")  # evicts "b"
                assert await rt.state(account, "b") == Account("bob")  # evicts "a"
            assert rt.statistics().passivations == 7
            journal.release.set()
        assert sorted(journal.saved) == [("account-a", 1), ("account-b", 1)]
        assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (2, 0)


@pytest.mark.anyio
async def test_a_snapshot_written_while_its_entity_activates_counts_as_its_last_one() -> None:
    # The activation looked for a snapshot before the queued one was written, and the queue
    # had forgotten it once written: evicted unchanged, the entity took the same one again.
    async with HeldSnapshots() as journal:
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "b", Open("bob"))  # evicts "a": its snapshot at 1 waits
            journal.loads = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.state, account, "a")  # looks, finds none, and waits
                await anyio.wait_all_tasks_blocked()
                journal.release.set()  # "a"'s snapshot is written meanwhile
                await anyio.wait_all_tasks_blocked()
                assert journal.saved == [("account-a", 1)]
                journal.loads.set()
            assert await rt.state(account, "b") == Account("bob")  # evicts "a" again
            assert rt.statistics().passivations == 3
        assert sorted(journal.saved) == [("account-a", 1), ("account-b", 1)]


@pytest.mark.anyio
async def test_a_snapshot_queued_after_a_later_one_does_not_hide_the_later_one() -> None:
    # Answered out of order, two commands queued their snapshots at versions 2, then 1, and
    # the queue remembered 1 as the last: the entity, activated before either was written,
    # took its state at 2 for newer than its last snapshot and queued 2 again when evicted.
    every_one = make_account(snapshot_every=1)
    journal = ReorderedAnswers()
    first, second = anyio.Event(), anyio.Event()
    journal.answers = {("account-a", 1): first, ("account-a", 2): second}
    async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_one, "a", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(rt.ask, every_one, "a", Deposit(5))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            second.set()
            await anyio.wait_all_tasks_blocked()
            first.set()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_one, "b", Open("bob"))  # evicts "a", up to date
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert await rt.state(every_one, "a") == Account("ada", 5, 1)  # evicts "b"
        assert await rt.state(every_one, "b") == Account("bob")  # evicts "a"
        assert rt.statistics().passivations == 3
        journal.release.set()
    assert sorted(journal.saved) == [("account-a", 1), ("account-a", 2), ("account-b", 1)]


@pytest.mark.anyio
async def test_an_eviction_stores_no_snapshot_unless_asked_to() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal, max_live_actors=1) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "b", Open("bob"))  # evicts "a"
            assert rt.statistics().passivations == 1
        assert await journal.load_snapshot("account-a") is None
        assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (0, 0)


@pytest.mark.anyio
async def test_a_passivation_snapshot_that_failed_to_be_stored_is_taken_at_the_next_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The store refuses the first snapshot of "a": logged, counted, and the runtime goes on.
    # Forgotten by the queue, it is not taken for stored: evicted again, "a" takes it again.
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    async with GatedSnapshots() as journal:
        journal.failures = {("account-a", 1)}
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "b", Open("bob"))  # evicts "a": its snapshot fails
            await anyio.wait_all_tasks_blocked()
            assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (0, 1)
            [record] = [r for r in caplog.records if "not stored" in r.getMessage()]
            assert record.levelno == logging.WARNING
            assert record.getMessage().startswith(
                "snapshot of 'account-a' not stored; no event is lost: the entity is rebuilt "
                "from an earlier snapshot or from its events."
            )
            assert await rt.state(account, "a") == Account("ada")  # evicts "b"
            assert await rt.state(account, "b") == Account("bob")  # evicts "a" again
            assert rt.statistics().passivations == 3
        assert sorted(journal.saved) == [("account-a", 1), ("account-b", 1)]
        assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (2, 1)


@pytest.mark.anyio
async def test_an_entity_activated_between_two_of_its_snapshots_counts_the_later_one() -> None:
    # Snapshots at 1 and 2 are queued; the one at 1 is written, the one at 2 not yet when the
    # entity activates again: its last snapshot is the one at 2, so evicted unchanged it
    # takes none (the queue must not forget 2 when it writes 1).
    every_one = make_account(snapshot_every=1)
    async with GatedSnapshots() as journal:
        first, second = anyio.Event(), anyio.Event()
        journal.gates = {("account-a", 1): first, ("account-a", 2): second}
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(every_one, "a", Open("ada"))
            await rt.ask(every_one, "a", Deposit(5))
            first.set()
            await anyio.wait_all_tasks_blocked()
            assert journal.saved == [("account-a", 1)]
            await rt.ask(every_one, "b", Open("bob"))  # evicts "a", up to date
            assert await rt.state(every_one, "a") == Account("ada", 5, 1)  # evicts "b"
            assert await rt.state(every_one, "b") == Account("bob")  # evicts "a"
            assert rt.statistics().passivations == 3
            second.set()
        assert sorted(journal.saved) == [("account-a", 1), ("account-a", 2), ("account-b", 1)]
        assert rt.statistics().snapshots == 3


@pytest.mark.anyio
async def test_a_snapshot_answered_late_behind_a_later_one_leaves_the_later_one_last() -> None:
    # Every 3: the snapshot at 6 is queued before the one at 3, whose command is answered
    # while the one at 7 is still pending. The queue must keep 6 as the last: the entity,
    # evicted and activated before either is written, is then due again at 9, not at 8.
    every_three = make_account(snapshot_every=3)
    journal = ReorderedAnswers()
    gates = {version: anyio.Event() for version in (3, 6, 7)}
    journal.answers = {("account-a", version): gate for version, gate in gates.items()}
    commands: list[Command] = [Open("ada"), *(Deposit(amount) for amount in range(1, 7))]
    async with Runtime(journal, max_live_actors=1) as rt:
        async with anyio.create_task_group() as tg:
            for command in commands:
                tg.start_soon(rt.ask, every_three, "a", command)
                await anyio.wait_all_tasks_blocked()
            journal.commit()
            for version in (6, 3, 7):
                await anyio.wait_all_tasks_blocked()
                gates[version].set()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_three, "b", Open("bob"))  # evicts "a"
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_three, "a", Deposit(7))  # version 8, evicts "b"
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert rt.statistics().passivations == 2
        journal.release.set()
    assert sorted(journal.saved) == [("account-a", 3), ("account-a", 6)]


@pytest.mark.anyio
async def test_an_activation_beyond_the_bound_evicts_every_idle_actor_over_it() -> None:
    # Bound 2, with "a" and "b" idle: "d" begins to activate (held), then "c" activates, and
    # four actors are live. Both idle ones go, least recently used first; evicting only
    # "a" would leave "b" over the bound, and "c" would go instead as soon as it is idle.
    passivated: list[str] = []
    async with GatedSnapshots() as journal:
        journal.activations = {"account-d": anyio.Event()}
        async with Runtime(
            journal,
            max_live_actors=2,
            on_lifecycle=lambda n: (
                passivated.append(n.stream_id) if n.kind == "passivated" else None
            ),
        ) as rt:
            await rt.ask(account, "a", Open("a"))
            await rt.ask(account, "b", Open("b"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.ask, account, "d", Open("d"))
                await anyio.wait_all_tasks_blocked()
                await rt.ask(account, "c", Open("c"))
                assert passivated == ["account-a", "account-b"]
                journal.activations["account-d"].set()
            assert passivated == ["account-a", "account-b"]
            assert rt.statistics().live_actors == 2


@pytest.mark.anyio
@pytest.mark.parametrize("start_appends", [False, True])
async def test_idleness_counts_from_the_answer_of_a_command_held_in_flight(
    start_appends: bool,
) -> None:
    # The command's append is held for three idle periods (a disk that stalls): the actor
    # was last admitted long ago, but it goes idle only when the command is answered, so a
    # whole idle period must pass from then before the sweeper evicts it.
    clock = ManualClock()
    journal = ManualJournal(start_appends=start_appends)
    passivated_at: list[float] = []
    answered_at: list[float] = []

    async def ask() -> None:
        await rt.ask(account, "42", Open("ada"))
        answered_at.append(clock.now())

    with anyio.fail_after(5):
        async with (
            Runtime(  # A short shutdown: should an assertion fail, nothing held is waited for.
                journal,
                clock=clock,
                passivate_after_s=10,
                shutdown_timeout_s=0.5,
                on_lifecycle=lambda n: (
                    passivated_at.append(clock.now()) if n.kind == "passivated" else None
                ),
            ) as rt,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(ask)
            await anyio.wait_all_tasks_blocked()
            await settle(clock, 30.0, 2.5)  # twelve sweeps, three idle periods
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            assert answered_at == [30.0]
            await settle(clock, 7.5, 2.5)  # three sweeps: less than a period since the answer
            assert passivated_at == []
            assert rt.statistics().live_actors == 1
            await settle(clock, 5.0, 2.5)
            assert passivated_at == [42.5]
