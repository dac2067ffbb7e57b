"""Lifecycle notices, statistics, and the outcome of told commands."""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel
import pytest

from journals import MemoryJournal, NewEvent
from runtime import CommandRejected, LifecycleEvent, RestartPolicy, Runtime, RuntimeStatistics
from runtime._repeats import Repeats
from runtime.testing import ManualClock

from .journal_doubles import SlowActivations
from .test_runtime_bank import Account, Deposit, Explode, Open, Withdraw, account, make_account
from .test_runtime_manual_journal import ManualJournal


@pytest.mark.anyio
async def test_told_commands_that_fail_are_logged_and_do_not_stop_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notices: list[LifecycleEvent] = []
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    async with MemoryJournal() as journal, Runtime(journal, on_lifecycle=notices.append) as rt:
        await rt.tell(account, "42", Open("ada"))
        await rt.tell(account, "42", Withdraw(5))
        await rt.tell(account, "42", Explode("told crash"))
        await rt.tell(account, "42", Deposit(5))
        assert await rt.state(account, "42") == Account("ada", 5, 1)
        assert rt.statistics().rejections == 1
    assert [n.kind for n in notices] == ["started", "crashed", "restarted"]
    # A rejection is the entity's answer, not a fault: logged for debugging only.
    records = {record.getMessage(): record.levelno for record in caplog.records}
    assert records["told command to 'account-42' rejected: insufficient funds"] == logging.DEBUG
    [failed] = [text for text in records if text.startswith("told command to 'account-42' failed")]
    assert failed.startswith("told command to 'account-42' failed. Later")
    assert records[failed] == logging.WARNING


@pytest.mark.anyio
async def test_an_observer_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def observer(notice: LifecycleEvent) -> None:
        raise RuntimeError("observer bug")

    async with MemoryJournal() as journal, Runtime(journal, on_lifecycle=observer) as rt:
        assert (await rt.ask(account, "42", Open("ada"))).version == 1
    assert any("on_lifecycle observer failed" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_an_observer_that_raises_on_a_crash_is_logged_without_the_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def observer(notice: LifecycleEvent) -> None:
        if notice.kind == "crashed":
            raise ValueError("observer bug")

    async with MemoryJournal() as journal, Runtime(journal, on_lifecycle=observer) as rt:
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError, match="the crash itself"):
            await rt.ask(account, "42", Explode("the crash itself"))
    [record] = [r for r in caplog.records if "on_lifecycle observer failed" in r.getMessage()]
    assert record.exc_info is not None
    logged = logging.Formatter().formatException(record.exc_info)
    assert "ValueError: observer bug" in logged
    # The crash is its caller's to report: not chained onto the observer's failure.
    assert "the crash itself" not in logged
    assert "During handling of the above exception" not in logged


@pytest.mark.anyio
async def test_statistics_show_mailboxes_and_the_journal() -> None:
    journal = ManualJournal()
    clock = ManualClock()
    async with Runtime(journal, clock=clock) as rt, anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(rt.ask, account, "hot", Deposit(1))
        tg.start_soon(rt.ask, account, "cold", Deposit(1))
        await anyio.wait_all_tasks_blocked()
        statistics = rt.statistics()
        assert isinstance(statistics, RuntimeStatistics)
        assert statistics.live_actors == 2
        assert statistics.busy_actors == 2
        assert statistics.commands_in_flight == 4
        assert statistics.mailbox_depth_max == 3
        assert statistics.callers_waiting_for_room == 0
        assert statistics.commands == 0
        assert statistics.journal.appends == 4
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        statistics = rt.statistics()
        assert (statistics.commands, statistics.commands_in_flight) == (4, 0)
        assert statistics.activations == 2
        clock.advance(2.0)
        statistics = rt.statistics()
        assert (statistics.uptime_s, statistics.commands_per_s) == (2.0, 2.0)  # 4 commands
        with pytest.raises(AttributeError):
            statistics.commands = 5  # type: ignore[misc]


@pytest.mark.anyio
async def test_commands_per_s_is_the_average_of_successful_commands_since_the_start() -> None:
    clock = ManualClock()
    async with MemoryJournal() as journal, Runtime(journal, clock=clock) as rt:
        await rt.ask(account, "42", Open("ada"))
        for _ in range(9):
            await rt.ask(account, "42", Deposit(1))
        with pytest.raises(CommandRejected):
            await rt.ask(account, "42", Withdraw(100))
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        clock.advance(1)
        first = rt.statistics()
        assert (first.commands, first.rejections, first.crashes) == (10, 1, 1)
        assert first.commands_per_s == 10.0
        clock.advance(9)  # idle: the average falls, the counters stay
        second = rt.statistics()
        assert (second.commands, second.commands_per_s) == (10, 1.0)
        recent = (second.commands - first.commands) / (second.uptime_s - first.uptime_s)
        assert recent == 0.0


@pytest.mark.anyio
async def test_a_queued_command_that_cannot_be_delivered_does_not_stop_the_runtime(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with MemoryJournal() as journal:
        await journal.append("account-bad", [NewEvent("account.Gone/1", {})], expected_version=0)
        async with Runtime(journal) as rt:
            rt.tell_nowait(account, "bad", Deposit(1))  # its activation fails: unknown type
            rt.tell_nowait(account, "good", Open("ada"))
        # Leaving the runtime delivered what was queued.
        async with Runtime(journal) as rt:
            assert await rt.state(account, "good") == Account("ada")
    assert any(
        record.getMessage().startswith("queued command for 'account-bad' not delivered")
        for record in caplog.records
    )


@pytest.mark.anyio
async def test_statistics_show_the_outbox_and_count_queued_commands_refused_at_delivery() -> None:
    policy = RestartPolicy(max_restarts=0)  # One crash stops the entity.
    async with MemoryJournal() as journal:
        await journal.append("account-bad", [NewEvent("account.Gone/1", {})], expected_version=0)
        async with Runtime(journal, restart_policy=policy) as rt:
            await rt.ask(account, "good", Open("ada"))
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "stopped", Explode())
            rt.tell_nowait(account, "bad", Deposit(1))  # Its activation fails: unknown type.
            rt.tell_nowait(account, "stopped", Deposit(1))  # EntityStopped.
            rt.tell_nowait(make_account(), "good", Deposit(1))  # Another "account" object.
            rt.tell_nowait(account, "good", Deposit(2))
            # Accepted, not delivered: none holds a mailbox slot or waits for room yet (the
            # first one has been handed to the deliverer, which has not run).
            stats = rt.statistics()
            assert (stats.outbox_depth, stats.outbox_undelivered) == (4, 0)
            assert (stats.mailbox_depth_max, stats.callers_waiting_for_room) == (0, 0)
            await anyio.wait_all_tasks_blocked()
            stats = rt.statistics()
            assert (stats.outbox_depth, stats.outbox_undelivered) == (0, 3)
            assert await rt.state(account, "good") == Account("ada", 2, 1)
        assert rt.statistics().outbox_undelivered == 3


@pytest.mark.anyio
async def test_queued_commands_shutdown_gives_up_on_are_counted_undelivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with SlowActivations() as journal:  # Activations wait for a gate never opened.
        async with Runtime(journal, shutdown_timeout_s=0.05) as rt:
            for amount in (1, 2, 3):
                rt.tell_nowait(account, "42", Deposit(amount))
            await anyio.wait_all_tasks_blocked()  # The first is being delivered.
            assert rt.statistics().outbox_depth == 3
        stats = rt.statistics()
        assert (stats.outbox_depth, stats.outbox_undelivered) == (0, 3)
    assert any(
        "3 command(s) accepted by tell_nowait were not delivered" in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.anyio
async def test_a_queued_command_waiting_for_room_at_shutdown_is_counted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = ManualJournal(start_appends=True)  # never commits within the shutdown bound
    async with journal:
        async with Runtime(journal, mailbox_bound=2, shutdown_timeout_s=0.05) as rt:
            for amount in range(1, 6):
                rt.tell_nowait(account, "42", Deposit(amount))
            await anyio.wait_all_tasks_blocked()  # two wait for durability, one for room
        # Shutdown gives up on the three, and the one waiting for room is then refused too:
        # it is still one command, counted once, and the outbox does not go below empty.
        stats = rt.statistics()
        assert (stats.outbox_depth, stats.outbox_undelivered) == (0, 3)
        journal.commit()
    messages = [record.getMessage() for record in caplog.records]
    assert not any(text.startswith("queued command for 'account-42'") for text in messages)
    assert any("3 command(s) accepted by tell_nowait" in text for text in messages), messages


@pytest.mark.anyio
async def test_a_queued_command_delivered_as_shutdown_gives_up_is_not_counted_undelivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Shutdown may stop waiting between the moment a queued command is delivered (its entity
    # accepted it, so it runs) and the moment the outbox's deliverer resumes: the command must
    # then count as delivered, not as undelivered, and the outbox must not go below empty.
    for checkpoints in range(8):
        caplog.clear()
        async with MemoryJournal() as journal:
            async with Runtime(journal, shutdown_timeout_s=0) as rt:
                rt.tell_nowait(account, "42", Open("ada"))
                for _ in range(checkpoints):
                    await anyio.lowlevel.checkpoint()
            await anyio.wait_all_tasks_blocked()
            executed = await journal.stream_version("account-42")
            stats = rt.statistics()
        assert stats.outbox_depth == 0, checkpoints
        assert stats.outbox_undelivered + executed == 1, checkpoints
        said_undelivered = any(
            "1 command(s) accepted by tell_nowait were not delivered" in record.getMessage()
            for record in caplog.records
        )
        assert said_undelivered == (executed == 0), checkpoints


def _told_records(
    caplog: pytest.LogCaptureFixture, start: str
) -> tuple[list[logging.LogRecord], list[logging.LogRecord]]:
    """The records whose message starts with ``start``: those above debug level, and those at it."""
    records = [r for r in caplog.records if r.getMessage().startswith(start)]
    return [r for r in records if r.levelno > logging.DEBUG], [
        r for r in records if r.levelno == logging.DEBUG
    ]


@pytest.mark.anyio
async def test_a_failed_journal_is_logged_once_at_error_level_not_once_per_told_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        for entity in range(20):
            await rt.ask(account, str(entity), Open("ada"))
        journal.fail(OSError(5, "fsync failed"))
        for entity in range(100):
            await rt.tell(account, str(entity % 20), Deposit(1))
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().append_failures == 100
    logged, later = _told_records(caplog, "told command to")
    [record] = logged
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("told command to 'account-0' failed: the journal failed")
    assert "reopen the journal in a new runtime" in record.getMessage()
    assert "Later told commands of 'account' that fail with JournalFailed" in record.getMessage()
    assert record.exc_info is not None
    assert "fsync failed" in logging.Formatter().formatException(record.exc_info)
    assert len(later) == 99
    assert all(r.exc_info is None and "JournalFailed" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_told_commands_that_crash_alike_are_logged_once_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        for entity in range(50):
            await rt.tell(account, str(entity), Explode("a bug in decide"))
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().crashes == 50
    logged, later = _told_records(caplog, "told command to")
    [record] = logged
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None
    assert "a bug in decide" in logging.Formatter().formatException(record.exc_info)
    assert "statistics() counts them" in record.getMessage()
    assert [r.getMessage() for r in later] == [
        f"told command to 'account-{entity}' failed: RuntimeError: a bug in decide"
        for entity in range(1, 50)
    ]


@pytest.mark.anyio
async def test_queued_commands_refused_alike_at_delivery_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    policy = RestartPolicy(max_restarts=0)  # One crash stops the entity.
    async with MemoryJournal() as journal, Runtime(journal, restart_policy=policy) as rt:
        with pytest.raises(RuntimeError, match="boom"):
            await rt.ask(account, "stopped", Explode())
        for amount in range(1, 41):
            rt.tell_nowait(account, "stopped", Deposit(amount))
        await anyio.wait_all_tasks_blocked()
        assert rt.statistics().outbox_undelivered == 40
    logged, later = _told_records(caplog, "queued command for 'account-stopped' not delivered")
    [record] = logged
    assert record.levelno == logging.WARNING
    assert "Later told commands of 'account' that fail with EntityStopped" in record.getMessage()
    assert len(later) == 39
    assert all(r.exc_info is None and "EntityStopped" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_an_observer_that_raises_on_every_notice_is_logged_once_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")

    def observer(notice: LifecycleEvent) -> None:
        raise RuntimeError("observer bug")

    runtime = Runtime(MemoryJournal(), on_lifecycle=observer, max_live_actors=10, owns_journal=True)
    async with runtime as rt:
        for entity in range(30):  # 30 started, 20 passivated
            await rt.ask(account, str(entity), Open("ada"))
        assert rt.statistics().passivations == 20
    logged, later = _told_records(caplog, "on_lifecycle observer failed")
    assert [(r.levelno, r.getMessage().split(";")[0]) for r in logged] == [
        (logging.ERROR, "on_lifecycle observer failed on 'started' for 'account-0'"),
        (logging.ERROR, "on_lifecycle observer failed on 'passivated' for 'account-0'"),
    ]
    assert all(r.exc_info is not None for r in logged)
    assert "Later notices 'started' on which it fails with RuntimeError" in logged[0].getMessage()
    assert len(later) == 48
    assert all(r.exc_info is None and "RuntimeError: observer bug" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_a_repeated_failure_is_logged_with_its_traceback_again_after_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Another incident of the same kind, later, must be seen: once a minute has passed, the
    # next failure is logged in full, with how many went to debug level meanwhile.
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    moment = [1000.0]
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        rt._repeats = Repeats(now=lambda: moment[0])
        for entity, seconds in [("1", 0), ("2", 30), ("3", 59.9), ("4", 60), ("5", 61)]:
            moment[0] = 1000.0 + seconds
            await rt.tell(account, entity, Explode())
        await anyio.wait_all_tasks_blocked()
    logged, later = _told_records(caplog, "told command to")
    assert [r.getMessage()[:29] for r in logged] == [
        "told command to 'account-1' f",
        "told command to 'account-4' f",
    ]
    assert all(r.exc_info is not None for r in logged)
    assert "in the next minute are logged at debug level" in logged[0].getMessage()
    assert "more of this kind" not in logged[0].getMessage()
    assert (
        "(2 more of this kind were logged at debug level since the last such record)"
        in logged[1].getMessage()
    )
    assert [r.getMessage()[:27] for r in later] == [
        "told command to 'account-2'",
        "told command to 'account-3'",
        "told command to 'account-5'",
    ]
