"""The supervisor: restart decisions (pure), crashes, backoff, give-up, reset and cool-down."""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journals import MemoryJournal, NewEvent
from runtime import (
    Aggregate,
    EntityStopped,
    LifecycleEvent,
    RestartPolicy,
    Runtime,
    UnknownEventType,
    decide_after_crash,
)
from runtime._supervision import Supervised, forget_old_crashes
from runtime.testing import ManualClock

from .test_runtime_bank import Account, Deposit, Explode, Open, account
from .test_runtime_manual_journal import ManualJournal

POLICY = RestartPolicy(
    max_restarts=3, period_s=60, backoff_initial_s=1, backoff_multiplier=2, backoff_max_s=3
)


def test_backoff_doubles_up_to_its_cap() -> None:
    crashes: tuple[float, ...] = ()
    delays = []
    for now in [100.0, 101.0, 102.0]:
        decision = decide_after_crash(POLICY, crashes, now)
        assert not decision.stop
        delays.append(decision.restart_at - now)
        crashes = decision.crash_times
    assert delays == [1, 2, 3]


def test_the_crash_beyond_the_intensity_stops_the_entity() -> None:
    decision = decide_after_crash(POLICY, (10.0, 20.0, 30.0), 40.0)
    assert decision.stop
    assert decision.stopped_until == math.inf
    with_cooldown = replace(POLICY, cooldown_s=30)
    assert decide_after_crash(with_cooldown, (10.0, 20.0, 30.0), 40.0).stopped_until == 70.0


def test_crashes_older_than_the_period_are_forgotten() -> None:
    decision = decide_after_crash(POLICY, (0.0, 1.0, 2.0), 61.5)
    assert not decision.stop
    assert decision.crash_times == (2.0, 61.5)


@given(
    crashes=st.lists(st.floats(min_value=0, max_value=1000), max_size=12),
    max_restarts=st.integers(min_value=0, max_value=6),
)
def test_decisions_follow_the_policy(crashes: list[float], max_restarts: int) -> None:
    policy = replace(POLICY, max_restarts=max_restarts, cooldown_s=5)
    now = 1000.0
    decision = decide_after_crash(policy, sorted(crashes), now)
    recent = [t for t in crashes if now - t < policy.period_s]
    assert decision.crash_times == (*sorted(recent), now)
    assert decision.stop == (len(recent) + 1 > max_restarts)
    if decision.stop:
        assert decision.stopped_until == now + 5
    else:
        delay = decision.restart_at - now
        assert policy.backoff_initial_s <= delay <= policy.backoff_max_s
        assert delay == min(2 ** len(recent), policy.backoff_max_s)


@pytest.mark.parametrize(
    "options",
    [
        {"max_restarts": -1},
        {"period_s": 0},
        {"backoff_initial_s": -1},
        {"backoff_multiplier": 0.5},
        {"cooldown_s": -1},
    ],
)
def test_policies_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RestartPolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "max_restarts",
        "period_s",
        "backoff_initial_s",
        "backoff_multiplier",
        "backoff_max_s",
        "cooldown_s",
    ],
)
def test_a_policy_setting_that_is_not_a_number_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be .*, not nan"):
        RestartPolicy(**{name: math.nan})  # type: ignore[arg-type]


@pytest.mark.parametrize("restarts", [1.5, True, "3", math.inf])
def test_max_restarts_is_a_whole_number(restarts: Any) -> None:
    with pytest.raises(ValueError, match=r"max_restarts must be a whole number >= 0, not "):
        RestartPolicy(max_restarts=restarts)


@pytest.mark.anyio
async def test_a_crash_fails_the_command_and_the_actor_restarts_from_the_journal() -> None:
    clock = ManualClock(autojump=True)
    notices: list[LifecycleEvent] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=POLICY, on_lifecycle=notices.append) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        await rt.ask(account, "42", Deposit(5))
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "42", Explode())
        assert (await rt.ask(account, "42", Deposit(1))).version == 3
        assert await rt.state(account, "42") == Account("ada", 6, 2)
        statistics = rt.statistics()
        assert (statistics.crashes, statistics.restarts, statistics.activations) == (1, 1, 2)
    assert [n.kind for n in notices] == ["started", "crashed", "restarted"]
    assert isinstance(notices[1].error, RuntimeError)
    assert notices[1].stream_id == "account-42"
    assert clock.sleeps == [1]


@pytest.mark.anyio
async def test_repeated_crashes_back_off_then_stop_until_reset() -> None:
    clock = ManualClock(autojump=True)
    kinds: list[str] = []
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal, clock=clock, restart_policy=POLICY, on_lifecycle=lambda n: kinds.append(n.kind)
        ) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        for number in range(4):
            with pytest.raises(RuntimeError, match=f"crash {number}"):
                await rt.ask(account, "42", Explode(f"crash {number}"))
        assert clock.sleeps == [1, 2, 3]
        with pytest.raises(EntityStopped, match=r"'account-42' was stopped .*crash 3") as caught:
            await rt.ask(account, "42", Deposit(1))
        assert isinstance(caught.value.last_failure, RuntimeError)
        assert caught.value.until_s is None
        assert rt.statistics().stopped_entities == 1
        assert clock.sleeps == [1, 2, 3]  # failing fast: no more waiting
        await rt.ask(account, "7", Open("bob"))  # other entities are not affected
        rt.reset(account, "42")
        assert (await rt.ask(account, "42", Deposit(1))).version == 2
        assert rt.statistics().stopped_entities == 0
    assert kinds.count("stopped") == 1
    assert kinds[-3:] == ["started", "reset", "recovered"]


@pytest.mark.anyio
async def test_reset_tells_observers_only_when_it_releases_a_stopped_entity() -> None:
    clock = ManualClock(autojump=True)
    notices: list[LifecycleEvent] = []
    policy = replace(POLICY, max_restarts=1)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy, on_lifecycle=notices.append) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        rt.reset(account, "42")  # never crashed
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        rt.reset(account, "42")  # crashed, not stopped: its crash is forgotten, quietly
        assert (await rt.ask(account, "42", Deposit(1))).version == 2
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await rt.ask(account, "42", Explode())
        assert rt.statistics().stopped_entities == 1
        rt.reset(account, "42")
        assert (await rt.ask(account, "42", Deposit(1))).version == 3
    kinds = [notice.kind for notice in notices]
    assert kinds == [
        *("started", "crashed", "recovered"),
        *("crashed", "restarted", "crashed", "stopped", "reset", "recovered"),
    ]
    reset = notices[-2]
    assert (reset.stream_id, str(reset.error)) == ("account-42", "boom")
    # The version of the crash that stopped it, as the stopped notice tells it.
    assert notices[-3].kind == "stopped"
    assert reset.version == notices[-3].version == 2


@pytest.mark.anyio
async def test_a_stopped_entity_comes_back_after_its_cool_down() -> None:
    clock = ManualClock(autojump=True)
    policy = replace(POLICY, max_restarts=0, cooldown_s=30)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        with pytest.raises(EntityStopped, match="until its cool-down ends") as caught:
            await rt.ask(account, "42", Deposit(1))
        assert caught.value.until_s == clock.now() + 30
        clock.advance(30)
        assert (await rt.ask(account, "42", Deposit(1))).version == 2
        assert rt.statistics().restarts == 1


@pytest.mark.anyio
async def test_a_crash_lets_earlier_commands_in_flight_complete() -> None:
    journal = ManualJournal()
    results: list[object] = []

    async def ask(command: Any) -> None:
        try:
            results.append(await rt.ask(account, "42", command))
        except RuntimeError as error:
            results.append(error)

    async with Runtime(journal, clock=ManualClock(autojump=True)) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, Open("ada"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, Explode())
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, Deposit(3))  # waits until the crashed actor settles
            await anyio.wait_all_tasks_blocked()
            assert len(results) == 1
            assert isinstance(results[0], RuntimeError)
            assert journal.pending == 1
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert [getattr(r, "version", None) for r in results] == [None, 1, 2]
        assert await rt.state(account, "42") == Account("ada", 3, 1)


@dataclass(frozen=True)
class Counted:
    pass


def poisoned_evolve(state: int, event: Counted) -> int:
    raise ValueError("cannot evolve")


poisoned: Aggregate[int, object, Counted] = Aggregate(
    "poisoned", 0, lambda s, c: [Counted()], poisoned_evolve, events={"C": Counted}
)


@pytest.mark.anyio
async def test_a_crash_during_replay_is_supervised_too() -> None:
    clock = ManualClock(autojump=True)
    policy = replace(POLICY, max_restarts=1)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        await journal.append("poisoned-1", [NewEvent("poisoned.C/1", {})], expected_version=0)
        with pytest.raises(ValueError, match="cannot evolve"):
            await rt.ask(poisoned, "1", object())
        with pytest.raises(ValueError, match="cannot evolve"):
            await rt.ask(poisoned, "1", object())
        with pytest.raises(EntityStopped, match="cannot evolve"):
            await rt.ask(poisoned, "1", object())
        await journal.append("account-9", [NewEvent("account.Unknown/1", {})], expected_version=0)
        with pytest.raises(UnknownEventType, match=r"account\.Unknown/1"):
            await rt.ask(account, "9", Deposit(1))
        assert rt.statistics().live_actors == 0


@pytest.mark.anyio
async def test_old_crash_history_does_not_accumulate() -> None:
    clock = ManualClock(autojump=True)
    policy = replace(POLICY, period_s=10, backoff_initial_s=0)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        for number in range(1100):
            with pytest.raises(RuntimeError):
                await rt.ask(account, f"e{number}", Explode())
        assert len(rt._supervised) == 1024 + 76  # the first pass found nothing old enough
        clock.advance(11)
        for number in range(1100, 2200):
            with pytest.raises(RuntimeError):
                await rt.ask(account, f"e{number}", Explode())
        # When the table doubled, a pass dropped the entities whose crashes were all older
        # than the period: only the second round is remembered.
        assert len(rt._supervised) == 1100
        assert "account-e0" not in rt._supervised
        assert "account-e2199" in rt._supervised
        assert rt.statistics().crashes == 2200


def test_an_entity_is_not_forgotten_while_its_backoff_lasts() -> None:
    # A backoff longer than the period: the crash is old, the restart is still ahead.
    failure = RuntimeError("boom")
    table = {
        "waiting": Supervised(deque([0.0]), 30.0, False, 0.0, failure),
        "over": Supervised(deque([0.0]), 5.0, False, 0.0, failure),
        "stopped": Supervised(deque([0.0]), 5.0, True, math.inf, failure),
    }
    forget_old_crashes(table, period_s=10, now=20.0)
    assert sorted(table) == ["stopped", "waiting"]
    forget_old_crashes(table, period_s=10, now=30.0)
    assert sorted(table) == ["stopped"]


def test_the_table_is_pruned_next_when_it_has_doubled() -> None:
    # Pruned at every crash instead, a table of thousands of recent crashes would be walked
    # whole at each new one.
    failure = RuntimeError("boom")
    table = {f"e{n}": Supervised(deque([float(n)]), 0.0, False, 0.0, failure) for n in range(1500)}
    assert forget_old_crashes(table, period_s=10_000, now=1500.0) == 3000
    assert forget_old_crashes({}, period_s=10, now=0.0) == 1024


@pytest.mark.parametrize(("initial", "cap"), [(10.0, 1.0), (1.0, 1.0), (0.0, 0.0)])
def test_the_cap_bounds_an_initial_backoff_above_it(initial: float, cap: float) -> None:
    policy = RestartPolicy(backoff_initial_s=initial, backoff_max_s=cap)
    for crashes in [(), (99.0,), (98.0, 99.0)]:
        decision = decide_after_crash(policy, crashes, 100.0)
        assert decision.restart_at == 100.0 + cap


@pytest.mark.parametrize(
    ("initial", "multiplier", "cap", "expected"),
    [
        (0.0, 2.0, 5.0, 0.0),  # no backoff at all, however many restarts
        (0.0001, 2.0, 0.001, 0.001),
        (1.0, 2.0, 5.0, 5.0),
        (1.0, 10.0, math.inf, math.inf),  # no cap: the delay grows beyond any float
        (0.0, math.inf, 5.0, 0.0),
        (1.0, math.inf, 5.0, 5.0),
    ],
)
def test_the_backoff_of_a_late_restart_does_not_overflow(
    initial: float, multiplier: float, cap: float, expected: float
) -> None:
    policy = RestartPolicy(
        max_restarts=100_000,
        backoff_initial_s=initial,
        backoff_multiplier=multiplier,
        backoff_max_s=cap,
    )
    crashes = tuple(-t / 100 for t in range(2000, 0, -1))  # 2,000 crashes in the last 20 s
    decision = decide_after_crash(policy, crashes, 0.0)
    assert not decision.stop
    assert decision.restart_at == expected


def test_the_backoff_is_exact_until_its_cap() -> None:
    policy = RestartPolicy(
        max_restarts=2000, backoff_initial_s=1e-300, backoff_multiplier=2, backoff_max_s=1e300
    )
    for restarts in (1, 2, 100, 1000, 1024):
        decision = decide_after_crash(policy, (0.0,) * (restarts - 1), 0.0)
        assert decision.restart_at == 1e-300 * 2.0 ** (restarts - 1)
    # Beyond 2.0 ** 1023 the power is not a float, but the delay still is.
    decision = decide_after_crash(policy, (0.0,) * 1099, 0.0)
    assert decision.restart_at == pytest.approx(math.ldexp(1e-300, 1099), rel=1e-9)
    decision = decide_after_crash(policy, (0.0,) * 1999, 0.0)
    assert decision.restart_at == 1e300


@pytest.mark.anyio
async def test_an_entity_that_keeps_crashing_keeps_failing_with_its_crash() -> None:
    # Never stop, restart at once: a thousand crashes and more in one period.
    policy = RestartPolicy(max_restarts=100_000, backoff_initial_s=0, backoff_max_s=5)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=ManualClock(autojump=True), restart_policy=policy) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        for number in range(1100):
            with pytest.raises(RuntimeError, match=f"crash {number}$"):
                await rt.ask(account, "42", Explode(f"crash {number}"), timeout_s=1)
        statistics = rt.statistics()
        assert (statistics.crashes, statistics.restarts) == (1100, 1099)
        assert statistics.commands_in_flight == 0
        assert (await rt.ask(account, "42", Deposit(1))).version == 2


class FailingClock(ManualClock):
    """A clock whose ``now`` raises while ``failing`` is set."""

    failing = False

    def now(self) -> float:
        if self.failing:
            raise OSError("the clock failed")
        return super().now()


@pytest.mark.anyio
async def test_a_crash_frees_its_slot_even_when_the_supervisor_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FailingClock(autojump=True)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=POLICY, mailbox_bound=2) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        clock.failing = True
        for _ in range(3):  # more than the mailbox holds: a slot kept would wedge the entity
            with pytest.raises(RuntimeError, match=r"^boom$"):
                await rt.ask(account, "42", Explode(), timeout_s=1)
        clock.failing = False
        assert rt.statistics().commands_in_flight == 0
        assert (await rt.ask(account, "42", Deposit(1), timeout_s=1)).version == 2
        assert await rt.state(account, "42") == Account("ada", 1, 1)
    failures = [r for r in caplog.records if "supervisor failed" in r.getMessage()]
    assert len(failures) == 3
    assert "account-42" in failures[0].getMessage()


@pytest.mark.anyio
async def test_a_crash_during_replay_reaches_its_caller_when_the_supervisor_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FailingClock(autojump=True)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=POLICY) as rt,
    ):
        await journal.append("poisoned-1", [NewEvent("poisoned.C/1", {})], expected_version=0)
        clock.failing = True
        with pytest.raises(ValueError, match="cannot evolve"):
            await rt.ask(poisoned, "1", object())
        clock.failing = False
        assert rt.statistics().live_actors == 0
    assert any("supervisor failed" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_stopping_an_entity_is_logged_with_the_crash_and_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    policy = RestartPolicy(max_restarts=2, period_s=60, backoff_initial_s=0)
    async with MemoryJournal() as journal, Runtime(journal, restart_policy=policy) as rt:
        for _ in range(3):  # Asked crashes are their callers' to report: not logged.
            with pytest.raises(RuntimeError, match="a bug in decide"):
                await rt.ask(account, "42", Explode("a bug in decide"))
        for _ in range(100):
            with pytest.raises(EntityStopped):
                await rt.ask(account, "42", Deposit(1))
    [record] = [r for r in caplog.records if r.name == "eventfold.runtime"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        "'account-42' stopped: it crashed 3 times within period_s=60 s, more than "
        "RestartPolicy(max_restarts=2) allows; commands to it fail fast with EntityStopped "
        "until runtime.reset(...) is called. Fix the cause"
    )
    assert record.exc_info is not None
    assert "a bug in decide" in logging.Formatter().formatException(record.exc_info)


@pytest.mark.anyio
async def test_entities_stopped_alike_are_logged_once_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    policy = RestartPolicy(max_restarts=0, cooldown_s=30)  # One crash stops an entity.
    async with MemoryJournal() as journal, Runtime(journal, restart_policy=policy) as rt:
        for entity in range(40):
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, str(entity), Explode())
        assert rt.statistics().stopped_entities == 40
    records = [r for r in caplog.records if "stopped" in r.getMessage()]
    logged = [r for r in records if r.levelno > logging.DEBUG]
    [record] = logged
    assert "is called or its cool-down of 30 s ends" in record.getMessage()
    assert "Later entities of 'account' stopped after a crash with RuntimeError" in (
        record.getMessage()
    )
    assert [r.getMessage() for r in records if r.levelno == logging.DEBUG] == [
        f"'account-{entity}' stopped after a crash: RuntimeError: boom" for entity in range(1, 40)
    ]
