"""Snapshots every N events, snapshots at passivation, and rebuilding past states with state_at."""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

import journals._memory
from journals import EventEncodingError, FileJournal, MemoryJournal
from runtime import Aggregate, CommandResult, Runtime
from runtime._exceptions import VersionNotReached

from .journal_doubles import HeldSnapshots
from .test_runtime_bank import Account, Command, Deposit, Open, account, make_account
from .test_runtime_manual_journal import ManualJournal

# Snapshots are consulted for aggregates that take them (or with snapshot_on_passivation).
snapshotting = make_account(snapshot_every=100)


@pytest.mark.anyio
async def test_a_snapshot_every_n_events() -> None:
    every_three = make_account(snapshot_every=3)
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(every_three, "42", Open("ada"))
            for amount in range(1, 7):
                await rt.ask(every_three, "42", Deposit(amount))
        assert rt.statistics().snapshots == 2
        snapshot = await journal.load_snapshot("account-42")
        assert snapshot is not None
        assert snapshot.version == 6
        assert snapshot.data == {"owner": "ada", "balance": 15, "deposits": 5}
        earlier = await journal.load_snapshot("account-42", max_version=5)
        assert earlier is not None
        assert earlier.version == 3


@pytest.mark.anyio
async def test_state_at_a_version_leaves_the_live_actor_alone() -> None:
    every_two = make_account(snapshot_every=2)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(every_two, "42", Open("ada"))
        for amount in [10, 20, 30, 40]:
            await rt.ask(every_two, "42", Deposit(amount))
        assert await rt.state_at(every_two, "42", version=0) == Account()
        assert await rt.state_at(every_two, "42", version=1) == Account("ada")
        assert await rt.state_at(every_two, "42", version=3) == Account("ada", 30, 2)
        assert await rt.state_at(every_two, "42", version=5) == Account("ada", 100, 4)
        with pytest.raises(VersionNotReached, match="has 5 durable events"):
            await rt.state_at(every_two, "42", version=99)
        with pytest.raises(VersionNotReached, match="has no events"):
            await rt.state_at(every_two, "unknown", version=3)
        assert await rt.state(every_two, "42") == Account("ada", 100, 4)
        assert rt.statistics().activations == 1


def _stamped_a_second_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the MemoryJournal stamp each batch a second after the one before: the wall clock
    may give two appends the same microsecond, or step back between them."""
    stamps = itertools.count(1_700_000_000 * 10**9, 10**9)
    monkeypatch.setattr(journals._memory, "time", SimpleNamespace(time_ns=stamps.__next__))


@pytest.mark.anyio
async def test_state_at_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    _stamped_a_second_apart(monkeypatch)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        commands: list[Command] = [Open("ada"), Deposit(10), Deposit(20)]
        for command in commands:
            await rt.ask(account, "42", command)
        events = [e async for e in journal.read("account-42")]
        assert await rt.state_at(account, "42", at=events[1].recorded_at) == Account("ada", 10, 1)
        before = events[0].recorded_at - timedelta(microseconds=1)
        assert await rt.state_at(account, "42", at=before) == Account()
        later = datetime.now(UTC) + timedelta(days=1)
        assert await rt.state_at(account, "42", at=later) == Account("ada", 30, 2)


@pytest.mark.anyio
async def test_state_at_a_moment_stops_at_the_first_event_stamped_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The journal stamps events with the wall clock, which can step back (NTP, a restored
    # VM): event 3 is stamped before event 2. A moment between them gives the state after
    # event 1, one the entity had, not one with event 3 and without event 2.
    start = 1_700_000_000 * 10**9
    stamps = iter([start, start + 10 * 10**9, start + 5 * 10**9])
    monkeypatch.setattr(journals._memory, "time", SimpleNamespace(time_ns=lambda: next(stamps)))
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        commands: list[Command] = [Open("ada"), Deposit(10), Deposit(20)]
        for command in commands:
            await rt.ask(account, "42", command)
        events = [e async for e in journal.read("account-42")]
        moment = events[0].recorded_at + timedelta(seconds=7)
        assert events[2].recorded_at < moment < events[1].recorded_at
        assert await rt.state_at(account, "42", at=moment) == Account("ada")
        assert await rt.state_at(account, "42", at=events[1].recorded_at) == Account("ada", 30, 2)


@pytest.mark.anyio
async def test_state_at_checks_its_arguments() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(ValueError, match="exactly one of"):
            await rt.state_at(account, "42")
        with pytest.raises(ValueError, match="exactly one of"):
            await rt.state_at(account, "42", version=1, at=datetime.now(UTC))
        with pytest.raises(ValueError, match="timezone-aware"):
            await rt.state_at(account, "42", at=datetime.now())
        with pytest.raises(ValueError, match="version must be >= 0"):
            await rt.state_at(account, "42", version=-1)


@pytest.mark.anyio
async def test_snapshots_are_not_looked_up_for_aggregates_that_do_not_take_them() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(account, "42", Open("ada"))
        marked = {"owner": "from-snapshot", "balance": 0, "deposits": 0}
        await journal.save_snapshot("account-42", 1, marked, {"aggregate": "account", "schema": 1})
        async with Runtime(journal) as rt:
            assert await rt.state(account, "42") == Account("ada")
            # A past state at the same version is the same state: folded from the events too,
            # not read from a snapshot the activation would not trust.
            assert await rt.state_at(account, "42", version=1) == Account("ada")
        async with Runtime(journal, snapshot_on_passivation=True) as rt:
            assert await rt.state(account, "42") == Account("from-snapshot")
            assert await rt.state_at(account, "42", version=1) == Account("from-snapshot")


@pytest.mark.anyio
async def test_a_snapshot_not_taken_is_taken_by_the_next_command_or_when_due_again() -> None:
    # Due at version 2 (every 2): its caller goes away before the events are durable, so the
    # next command takes it, but encoding fails at version 3. That is not retried at once (it
    # would fail again, at every command): the next is due at version 5.
    failures = [3]

    def encode(state: Account) -> object:
        if failures and state.deposits + 1 == failures[0]:
            failures.pop()
            raise ValueError("not now")
        return {"owner": state.owner, "balance": state.balance, "deposits": state.deposits}

    every_two = make_account(snapshot_every=2, encode_state=encode)
    journal = ManualJournal(start_appends=True)
    async with Runtime(journal) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_two, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_two, "42", Deposit(1))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # the caller goes away; the deposit lands all the same
        for amount in (2, 3, 4):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.ask, every_two, "42", Deposit(amount))
                await anyio.wait_all_tasks_blocked()
                journal.commit()
    assert failures == []
    assert [snapshot.version for snapshot in journal.snapshots["account-42"]] == [5]
    assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (1, 1)


# Placed by start_append, or by append (a journal without start_append, or without room).
@pytest.mark.parametrize("start_appends", [True, False])
@pytest.mark.anyio
async def test_passivation_takes_the_snapshot_of_a_cancelled_command(start_appends: bool) -> None:
    every_one = make_account(snapshot_every=1)
    journal = ManualJournal(start_appends=start_appends)
    async with Runtime(journal, snapshot_on_passivation=True, max_live_actors=1) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_one, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_one, "42", Deposit(10))
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()  # the caller goes away; the deposit lands all the same
        journal.commit()
        for _ in range(5000):  # Through Journal.append, the outcome is polled for.
            if not rt.statistics().commands_in_flight:
                break  # The deposit's outcome is known: 42 is idle.
            await anyio.sleep(0.001)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, every_one, "7", Open("bob"))  # evicts account-42
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert rt.statistics().passivations == 1
    versions = [snapshot.version for snapshot in journal.snapshots["account-42"]]
    assert versions == [1, 2]


@dataclass(frozen=True)
class Measure:
    value: float


@dataclass(frozen=True)
class Measured:
    value: float


# The state counts the measurements; a non-finite one is an event the journals refuse.
meter: Aggregate[int, Measure, Measured] = Aggregate(
    "meter",
    0,
    lambda count, command: [Measured(command.value)],
    lambda count, event: count + 1,
    events={"Measured": Measured},
    snapshot_every=2,
)


@pytest.mark.anyio
async def test_a_snapshot_due_at_a_refused_append_is_taken_by_the_next_command_due() -> None:
    # Due at version 2 (every 2), but the journal refuses the events: nothing was written and
    # the entity stays at version 1, with no snapshot taken. The next command reaches version
    # 2 for real and takes the snapshot there.
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(meter, "m", Measure(1.0))
            with pytest.raises(EventEncodingError, match="non-finite"):
                await rt.ask(meter, "m", Measure(math.inf))
            assert (await rt.ask(meter, "m", Measure(2.0))).version == 2
            assert (await rt.ask(meter, "m", Measure(3.0))).version == 3
        assert rt.statistics().snapshots == 1
        snapshot = await journal.load_snapshot("meter-m")
        assert snapshot is not None
        assert (snapshot.version, snapshot.data) == (2, 2)


@pytest.mark.anyio
async def test_state_at_a_moment_never_starts_from_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A snapshot does not say when its events were recorded: one taken after the moment asked
    # for must not be used, nor one before it (the events after it must be checked).
    _stamped_a_second_apart(monkeypatch)
    every_two = make_account(snapshot_every=2)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        commands: list[Command] = [Open("ada"), Deposit(10), Deposit(20), Deposit(30)]
        for command in commands:
            await rt.ask(every_two, "42", command)
        await anyio.wait_all_tasks_blocked()  # the snapshot writer has caught up
        latest = await journal.load_snapshot("account-42")
        assert latest is not None
        assert latest.version == 4  # a replay could start from it: state_at must not
        events = [e async for e in journal.read("account-42")]
        at_first = await rt.state_at(every_two, "42", at=events[0].recorded_at)
        assert at_first == Account("ada")
        at_third = await rt.state_at(every_two, "42", at=events[2].recorded_at)
        assert at_third == Account("ada", 30, 2)


@pytest.mark.anyio
async def test_an_entity_activated_from_a_snapshot_takes_its_next_one_a_period_later() -> None:
    # Activated from the snapshot at version 3 (every 3), the entity is due again at 6, not
    # at its first command: a snapshot at 4 would only repeat most of the one at 3.
    every_three = make_account(snapshot_every=3)
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            commands: list[Command] = [Open("ada"), Deposit(1), Deposit(2)]
            for command in commands:
                await rt.ask(every_three, "42", command)
        assert rt.statistics().snapshots == 1
        async with Runtime(journal) as rt:
            for amount in [3, 4, 5]:
                await rt.ask(every_three, "42", Deposit(amount))
        assert rt.statistics().snapshots == 1
        before_six = await journal.load_snapshot("account-42", max_version=5)
        assert before_six is not None
        assert before_six.version == 3
        latest = await journal.load_snapshot("account-42")
        assert latest is not None
        assert (latest.version, latest.data) == (6, {"owner": "ada", "balance": 15, "deposits": 5})


@pytest.mark.anyio
async def test_an_actor_activated_from_a_snapshot_and_evicted_unchanged_takes_none() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "a", Deposit(3))
            await rt.ask(account, "b", Open("bob"))  # evicts "a": a snapshot at version 2
            await anyio.wait_all_tasks_blocked()  # the snapshot writer has caught up
            assert rt.statistics().snapshots == 1
            # Activated from that snapshot (evicting "b", snapshotted at 1), then evicted
            # again with nothing new: its snapshot is up to date already.
            assert await rt.state(account, "a") == Account("ada", 3, 1)
            assert await rt.state(account, "b") == Account("bob")
            assert rt.statistics().passivations == 3
        assert rt.statistics().snapshots == 2


async def _until_snapshots(runtime: Runtime, count: int) -> None:
    """Wait until the runtime's snapshot writer has stored ``count`` snapshots in all."""
    with anyio.fail_after(10):
        while True:
            if runtime.statistics().snapshots >= count:
                return
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_a_snapshot_stored_after_a_lookup_found_none_is_found_by_the_next_activation(
    tmp_path: Path,
) -> None:
    # A FileJournal answers the lookup of a stream without a snapshot from memory, on the
    # event loop's thread: a snapshot stored afterwards must be found all the same.
    async with FileJournal(tmp_path) as journal:
        async with Runtime(journal) as rt:  # Events, and no snapshot.
            await rt.ask(account, "a", Open("ada"))
            await rt.ask(account, "a", Deposit(3))
        async with Runtime(journal, max_live_actors=1, snapshot_on_passivation=True) as rt:
            assert await rt.state(account, "a") == Account("ada", 3, 1)  # Replayed in full.
            await rt.ask(account, "b", Open("bob"))  # Evicts "a": a snapshot at version 2.
            await _until_snapshots(rt, 1)
            # Activated from that snapshot (evicting "b", snapshotted at 1), then evicted
            # again with nothing new: its snapshot is up to date, so it takes none.
            assert await rt.state(account, "a") == Account("ada", 3, 1)
            await _until_snapshots(rt, 2)
            assert await rt.state(account, "b") == Account("bob")
            assert rt.statistics().passivations == 3
        assert rt.statistics().snapshots == 2
        snapshot = await journal.load_snapshot(account.stream_id("a"))
        assert snapshot is not None
        assert snapshot.version == 2


class RefusingSnapshots(MemoryJournal):
    """A journal that stores no snapshot: every save raises."""

    async def save_snapshot(self, *arguments: object, **options: object) -> None:
        raise OSError(28, "No space left on device (snapshots)")


def _records(
    caplog: pytest.LogCaptureFixture, start: str
) -> tuple[list[logging.LogRecord], list[logging.LogRecord]]:
    """The records whose message starts with ``start``: those above debug level, those at it."""
    records = [r for r in caplog.records if r.getMessage().startswith(start)]
    above = [r for r in records if r.levelno > logging.DEBUG]
    return above, [r for r in records if r.levelno == logging.DEBUG]


@pytest.mark.anyio
async def test_snapshots_a_journal_does_not_store_are_logged_once_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    every_one = make_account(snapshot_every=1)
    async with RefusingSnapshots() as journal, Runtime(journal) as rt:
        for entity in range(30):
            await rt.ask(every_one, str(entity), Open("ada"))
        await anyio.wait_all_tasks_blocked()
        assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (0, 30)
    logged, later = _records(caplog, "snapshot of ")
    [record] = logged
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("snapshot of 'account-0' not stored; no event is lost")
    assert "Later snapshots not stored with OSError in the next minute are logged at debug" in (
        record.getMessage()
    )
    assert record.exc_info is not None
    assert "No space left on device" in logging.Formatter().formatException(record.exc_info)
    assert len(later) == 29
    assert all(r.exc_info is None and "OSError" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_snapshots_refused_by_a_failed_journal_are_logged_once_at_error_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    async with MemoryJournal() as journal:
        runtime = Runtime(journal, max_live_actors=30, snapshot_on_passivation=True)
        async with runtime as rt:
            for entity in range(30):
                await rt.ask(account, str(entity), Open("ada"))
            journal.fail(OSError(5, "fsync failed"))
            for entity in range(30):  # Each activation evicts one of the 30, snapshotted.
                await rt.state(account, f"new-{entity}")
            await anyio.wait_all_tasks_blocked()
            assert rt.statistics().snapshots_skipped == 30
    logged, later = _records(caplog, "snapshot of ")
    [record] = logged
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("snapshot of 'account-0' not stored: the journal failed")
    assert record.exc_info is not None
    assert len(later) == 29
    assert all(r.exc_info is None and "JournalFailed" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_snapshots_decode_state_cannot_decode_are_logged_once_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")

    def decode(data: object) -> Account:
        raise KeyError("balance")

    broken = make_account(snapshot_every=1, decode_state=decode)
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            for entity in range(20):
                await rt.ask(broken, str(entity), Open("ada"))
        assert caplog.records == []
        async with Runtime(journal) as rt:
            for entity in range(20):  # Each replayed in full.
                assert await rt.state(broken, str(entity)) == Account("ada")
            assert await rt.state_at(broken, "0", version=1) == Account("ada")
    logged, later = _records(caplog, "snapshot of ")
    [record] = logged
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(
        "snapshot of 'account-0' at version 1 cannot be decoded; replaying in full (fix "
        "decode_state"
    )
    assert record.exc_info is not None
    assert "KeyError: 'balance'" in logging.Formatter().formatException(record.exc_info)
    assert len(later) == 20  # 19 activations and the state_at
    assert all(r.exc_info is None and "KeyError" in r.getMessage() for r in later)


@pytest.mark.anyio
async def test_a_snapshot_the_full_queue_has_no_room_for_is_counted_and_taken_when_due_next() -> (
    None
):
    # Every 2, one snapshot queued at most: the one at 2 is being written (held), the one at
    # 4 waits in the queue, and the one at 6 finds no room. Its command is answered all the
    # same, and since it was not taken the next command is due again: 7 - 4 >= 2.
    every_two = make_account(snapshot_every=2)
    async with HeldSnapshots() as journal:
        async with Runtime(journal, snapshot_queue_bound=1) as rt:
            await rt.ask(every_two, "42", Open("ada"))
            for amount in range(1, 6):
                result = await rt.ask(every_two, "42", Deposit(amount))
                assert result.version == amount + 1
                await anyio.wait_all_tasks_blocked()  # the writer holds what it took
            assert rt.statistics().snapshots_skipped == 1
            journal.release.set()
            await anyio.wait_all_tasks_blocked()  # the writer has caught up
            assert journal.saved == [("account-42", 2), ("account-42", 4)]
            await rt.ask(every_two, "42", Deposit(6))
        assert journal.saved == [("account-42", 2), ("account-42", 4), ("account-42", 7)]
        assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (3, 1)


@pytest.mark.anyio
async def test_a_command_answered_after_shutdown_stopped_waiting_is_answered_as_it_went() -> None:
    # Shutdown gave up waiting for the command and closed the snapshot queue; the command's
    # events became durable after that, and the snapshot it made due cannot be queued any
    # more: counted as skipped, never raised to a caller whose events are durable.
    every_one = make_account(snapshot_every=1)
    journal = ManualJournal()
    answers: list[object] = []

    async def ask() -> None:
        try:
            answers.append(await rt.ask(every_one, "42", Open("ada")))
        except Exception as error:
            answers.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            async with Runtime(journal, shutdown_timeout_s=0.01) as rt:
                tg.start_soon(ask)
                await anyio.wait_all_tasks_blocked()
                assert journal.pending == 1
            journal.commit()
    [answer] = answers
    assert isinstance(answer, CommandResult), repr(answer)
    assert answer.version == 1
    assert (rt.statistics().snapshots, rt.statistics().snapshots_skipped) == (0, 1)
    assert journal.snapshots == {}
