"""The supervisor at the edges of its settings and of the runtime's life: policies that
never stop an entity, values of the wrong type, backoffs cut short by a reset or shutdown."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from typing import Any

import anyio
import pytest

from journals import MemoryJournal
from runtime import EntityStopped, LifecycleEvent, RestartPolicy, Runtime, RuntimeClosed
from runtime.testing import ManualClock

from .test_runtime_bank import Deposit, Explode, Open, account


@pytest.mark.anyio
@pytest.mark.parametrize("restarts", [sys.maxsize, 2**70])
async def test_a_policy_that_never_stops_an_entity_still_backs_off(
    restarts: int, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(autojump=True)
    policy = RestartPolicy(max_restarts=restarts, backoff_initial_s=1, backoff_max_s=8)
    notices: list[LifecycleEvent] = []
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy, on_lifecycle=notices.append) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        for _ in range(3):
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "42", Explode())
        assert (await rt.ask(account, "42", Deposit(1))).version == 2
        assert (rt.statistics().crashes, rt.statistics().restarts) == (3, 3)
    assert clock.sleeps == [1, 2, 4]
    assert [n.kind for n in notices].count("crashed") == 3
    assert not [r for r in caplog.records if "supervisor failed" in r.getMessage()]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("period_s", "60"),
        ("period_s", None),
        ("period_s", True),
        ("backoff_initial_s", "0.5"),
        ("backoff_max_s", timedelta(seconds=5)),
        ("backoff_multiplier", None),
        ("cooldown_s", "30"),
        ("cooldown_s", True),
    ],
)
def test_a_policy_setting_of_the_wrong_type_is_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(
        ValueError, match=rf"^{name} must be a number .*, not {re.escape(repr(value))}$"
    ):
        RestartPolicy(**{name: value})  # type: ignore[arg-type]


SLOW = RestartPolicy(max_restarts=3, backoff_initial_s=30, backoff_max_s=30)


@pytest.mark.anyio
async def test_a_reset_ends_the_backoff_that_callers_are_waiting_out() -> None:
    clock = ManualClock()  # time stands still: only the reset can end the backoff
    notices: list[LifecycleEvent] = []
    answers: list[int] = []

    async def deposit() -> None:
        answers.append((await rt.ask(account, "42", Deposit(1))).version)

    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=SLOW, on_lifecycle=notices.append) as rt,
        anyio.create_task_group() as tg,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "42", Explode())
        for _ in range(2):
            tg.start_soon(deposit)
        await anyio.wait_all_tasks_blocked()
        assert (answers, clock.sleeps) == ([], [30, 30])
        rt.reset(account, "42")
        await anyio.wait_all_tasks_blocked()
        assert sorted(answers) == [2, 3]
        tg.cancel_scope.cancel()  # without the reset's wake-up they would sleep on
    assert [n.kind for n in notices] == ["started", "crashed", "recovered"]


@pytest.mark.anyio
async def test_callers_that_waited_out_a_backoff_are_not_kept_by_the_supervisor() -> None:
    # An entity whose policy never stops it keeps its record while it crashes: the scopes of
    # the callers that slept out each backoff must not pile up in it.
    clock = ManualClock()
    answers: list[int] = []

    async def deposit() -> None:
        answers.append((await rt.ask(account, "42", Deposit(1))).version)

    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=SLOW) as rt,
        anyio.create_task_group() as tg,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "42", Explode())
        for _ in range(3):
            tg.start_soon(deposit)
        await anyio.wait_all_tasks_blocked()
        record = rt._supervised["account-42"]
        assert record.sleepers is not None
        assert len(record.sleepers) == 3
        clock.advance(30)
        await anyio.wait_all_tasks_blocked()
        assert sorted(answers) == [2, 3, 4]
        assert rt._supervised["account-42"] is record  # its crash is still within the period
        assert record.sleepers == set()


@pytest.mark.anyio
async def test_shutdown_ends_the_backoff_that_callers_are_waiting_out() -> None:
    clock = ManualClock()
    failures: list[BaseException] = []

    async def deposit() -> None:
        try:
            await rt.ask(account, "42", Deposit(1))
        except RuntimeClosed as error:
            failures.append(error)

    async with MemoryJournal() as journal, anyio.create_task_group() as tg:
        async with Runtime(journal, clock=clock, restart_policy=SLOW) as rt:
            await rt.ask(account, "42", Open("ada"))
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "42", Explode())
            tg.start_soon(deposit)
            await anyio.wait_all_tasks_blocked()
            assert clock.sleeps == [30]
        await anyio.wait_all_tasks_blocked()
        assert len(failures) == 1
        assert "shutting down or has shut down" in str(failures[0])
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_shutdown_does_not_wait_out_a_backoff_for_a_told_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # tell_nowait accepted a command for an entity backing off: shutdown delivers what the
    # outbox holds first, and that delivery used to sleep out the backoff, holding the exit
    # and the asks waiting beside it until shutdown_timeout_s gave up on it (with no limit,
    # for ever). It is refused at once, as those asks are: counted and logged as refused at
    # delivery, not executed.
    clock = ManualClock()
    failures: list[BaseException] = []

    async def deposit() -> None:
        try:
            await rt.ask(account, "42", Deposit(1))
        except RuntimeClosed as error:
            failures.append(error)

    async with MemoryJournal() as journal, anyio.create_task_group() as tg:
        with anyio.fail_after(10):  # a hang guard: the manual clock never ends the backoff
            async with Runtime(
                journal, clock=clock, restart_policy=SLOW, shutdown_timeout_s=1
            ) as rt:
                await rt.ask(account, "42", Open("ada"))
                with pytest.raises(RuntimeError, match="boom"):
                    await rt.ask(account, "42", Explode())
                rt.tell_nowait(account, "42", Deposit(7))
                tg.start_soon(deposit)
                await anyio.wait_all_tasks_blocked()
                assert clock.sleeps == [30, 30]
        await anyio.wait_all_tasks_blocked()
        assert len(failures) == 1
        assert "shutting down or has shut down" in str(failures[0])
        statistics = rt.statistics()
        assert (statistics.outbox_undelivered, statistics.outbox_depth) == (1, 0)
        assert statistics.commands == 1  # the Open: neither deposit was executed
        assert await journal.stream_version("account-42") == 1
        messages = [record.getMessage() for record in caplog.records]
        assert any(
            message.startswith("queued command for 'account-42' not delivered")
            for message in messages
        ), messages
        assert not any("were not delivered: the runtime shut" in message for message in messages)
        tg.cancel_scope.cancel()


async def async_observer(notice: LifecycleEvent) -> None:
    pass


class AsyncObserver:
    async def __call__(self, notice: LifecycleEvent) -> None:
        pass


@pytest.mark.parametrize("observer", [async_observer, AsyncObserver()])
def test_an_async_observer_is_refused_when_the_runtime_is_made(observer: Any) -> None:
    with pytest.raises(TypeError, match=r"on_lifecycle must be a plain function, not the async"):
        Runtime(MemoryJournal(), on_lifecycle=observer)


def test_an_observer_that_cannot_be_called_is_refused() -> None:
    with pytest.raises(TypeError, match=r"on_lifecycle must be a function .*, not list"):
        Runtime(MemoryJournal(), on_lifecycle=[])  # type: ignore[arg-type]


def test_a_callable_object_is_an_observer() -> None:
    class Observer:
        def __call__(self, notice: LifecycleEvent) -> None:
            pass

    Runtime(MemoryJournal(), on_lifecycle=Observer())
    Runtime(MemoryJournal(), on_lifecycle=print)


@pytest.mark.anyio
async def test_an_observer_that_resets_on_a_crash_gets_no_stopped_notice_after_it() -> None:
    notices: list[tuple[str, int]] = []

    def observer(notice: LifecycleEvent) -> None:
        notices.append((notice.kind, notice.version))
        if notice.kind == "crashed":
            rt.reset(account, "42")  # an operator's policy: always give it another go

    policy = RestartPolicy(max_restarts=0)
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal, clock=ManualClock(autojump=True), restart_policy=policy, on_lifecycle=observer
        ) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "42", Explode())
        assert rt.statistics().stopped_entities == 0
        assert (await rt.ask(account, "42", Deposit(1))).version == 2
    # The crash stopped it and the reset released it at once: the last word is the reset's.
    assert notices == [("started", 0), ("crashed", 1), ("reset", 1), ("recovered", 1)]


@pytest.mark.anyio
async def test_entity_stopped_says_how_long_its_cool_down_lasts() -> None:
    clock = ManualClock(autojump=True)
    policy = RestartPolicy(max_restarts=0, cooldown_s=30)
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, restart_policy=policy) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "42", Explode())
        clock.advance(10)
        # One crash stopped it (max_restarts=0): the message does not speak of repeated ones.
        with pytest.raises(
            EntityStopped,
            match=r"^'account-42' was stopped after more crashes than its RestartPolicy allows "
            r"\(last failure: RuntimeError\('boom'\)\); commands fail fast until its cool-down "
            r"ends \(in 20 s\) or 'runtime.reset\(...\)' is called",
        ) as caught:
            await rt.ask(account, "42", Deposit(1))
        assert (caught.value.until_s, caught.value.cooldown_left_s) == (clock.now() + 20, 20)
