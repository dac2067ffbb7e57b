"""Cancellation, crashes and journal failures that meet in one actor's pipeline.

Each test drives one exact schedule through ``ManualJournal`` (commits by hand): a caller
cancelled while its append waits, a crash or a failure arriving meanwhile, a slot handed to a
caller as the actor breaks, a caller cancelled after the runtime is gone; and the order in
which held answers come back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import FileJournal, JournalFailed, MemoryJournal
from runtime import Aggregate, CommandRejected, RestartPolicy, Runtime, RuntimeClosed

from .test_runtime_bank import (
    EVENTS,
    Account,
    Deposit,
    Explode,
    Noop,
    Open,
    Withdraw,
    account,
    decide,
    evolve,
)
from .test_runtime_manual_journal import ManualJournal

NO_BACKOFF = RestartPolicy(max_restarts=100, backoff_initial_s=0)


@pytest.fixture(params=[False, True], ids=["append", "start_append"])
def starts(request: pytest.FixtureRequest) -> bool:
    """Whether the journal places appends through ``start_append`` (no coroutine each)."""
    return bool(request.param)


class Answers:
    """What each caller got, by name, and the order in which the answers came back."""

    def __init__(self) -> None:
        self.by_name: dict[str, Any] = {}
        self.order: list[str] = []

    async def ask(self, runtime: Runtime, name: str, command: Any) -> None:
        try:
            self.by_name[name] = await runtime.ask(account, "42", command)
        except BaseException as error:
            self.by_name[name] = error
            if isinstance(error, anyio.get_cancelled_exc_class()):
                raise
        finally:
            self.order.append(name)

    async def state(self, runtime: Runtime, name: str) -> None:
        self.by_name[name] = await runtime.state(account, "42")
        self.order.append(name)


async def _opened(runtime: Runtime, journal: ManualJournal) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.ask, account, "42", Open("ada"))
        await anyio.wait_all_tasks_blocked()
        journal.commit()


@pytest.mark.anyio
async def test_a_crash_does_not_rebuild_the_actor_while_an_abandoned_append_may_land(
    starts: bool,
) -> None:
    journal = ManualJournal(start_appends=starts)
    answers = Answers()
    async with Runtime(journal, restart_policy=NO_BACKOFF) as runtime:
        await _opened(runtime, journal)
        with anyio.move_on_after(0.05):  # the caller gives up; its deposit stays in the log
            await runtime.ask(account, "42", Deposit(100))
        assert journal.pending == 1
        with pytest.raises(RuntimeError, match="boom"):
            await runtime.ask(account, "42", Explode("boom"))
        async with anyio.create_task_group() as tg:
            # The next command waits for the fresh activation, which waits for the deposit.
            tg.start_soon(answers.ask, runtime, "withdraw", Withdraw(50))
            await anyio.wait_all_tasks_blocked()
            assert answers.by_name == {}
            while "withdraw" not in answers.by_name:  # the deposit, then the withdrawal
                journal.commit()
                await anyio.sleep(0.01)
        assert answers.by_name["withdraw"].version == 3  # decided on 100, not on 0
        assert await runtime.state(account, "42") == Account("ada", 50, 1)


@pytest.mark.anyio
async def test_a_cancelled_caller_keeps_its_cancellation_to_itself(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    answers = Answers()
    async with Runtime(journal, restart_policy=NO_BACKOFF) as runtime:
        await _opened(runtime, journal)
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def cancellable() -> None:
                with scope:
                    await answers.ask(runtime, "deposit", Deposit(100))

            tg.start_soon(cancellable)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(answers.ask, runtime, "noop", Noop())  # held behind the deposit
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(answers.ask, runtime, "crash", Explode("boom"))
            await anyio.wait_all_tasks_blocked()
            scope.cancel()  # only the deposit's caller
            await anyio.wait_all_tasks_blocked()
            assert "noop" not in answers.by_name  # still waiting for the deposit's outcome
            journal.commit()
        cancelled = anyio.get_cancelled_exc_class()
        assert isinstance(answers.by_name["deposit"], cancelled)
        assert answers.by_name["noop"].version == 2  # answered once the deposit was durable
        assert isinstance(answers.by_name["crash"], RuntimeError)
        assert await runtime.state(account, "42") == Account("ada", 100, 1)


@pytest.mark.anyio
async def test_a_caller_handed_a_slot_as_the_actor_breaks_waits_for_a_fresh_one(
    starts: bool,
) -> None:
    journal = ManualJournal(start_appends=starts)
    answers = Answers()
    seen: list[str] = []
    async with Runtime(
        journal,
        mailbox_bound=2,
        restart_policy=RestartPolicy(max_restarts=0),
        on_lifecycle=lambda event: seen.append(event.kind),
    ) as runtime:
        await _opened(runtime, journal)
        async with anyio.create_task_group() as tg:
            for name, amount in (("first", 1), ("second", 2), ("third", 3)):
                tg.start_soon(answers.ask, runtime, name, Deposit(amount))
                await anyio.wait_all_tasks_blocked()
            journal.commit(1)  # the first is durable: its slot goes to the third caller
            journal.fail(OSError(5, "EIO"))  # the second fails: the actor breaks
        assert answers.by_name["first"].version == 2
        assert isinstance(answers.by_name["second"], JournalFailed)
        # Not decided against the broken actor's discarded state (which is no crash of the
        # aggregate's code): it waited for a fresh activation and met the failed journal.
        assert isinstance(answers.by_name["third"], JournalFailed)
        assert "crashed" not in seen
        assert runtime.statistics().crashes == 0


@pytest.mark.anyio
async def test_a_caller_cancelled_after_shutdown_gets_its_cancellation() -> None:
    journal = ManualJournal(start_appends=True)  # never commits: a disk that hangs
    runtime = Runtime(journal, shutdown_timeout_s=0.05)
    async with anyio.create_task_group() as app:
        async with runtime:
            app.start_soon(runtime.ask, account, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
        # The runtime stopped waiting for the command in flight; now the application stops.
        app.cancel_scope.cancel()
    assert runtime.statistics().commands_in_flight == 0


@pytest.mark.anyio
async def test_answers_behind_a_cancelled_command_fail_once_the_runtime_is_gone() -> None:
    journal = ManualJournal(start_appends=False)
    answers = Answers()
    runtime = Runtime(journal, shutdown_timeout_s=0.05)
    async with anyio.create_task_group() as app:
        async with runtime:
            scope = anyio.CancelScope()

            async def cancellable() -> None:
                with scope:
                    await answers.ask(runtime, "open", Open("ada"))

            app.start_soon(cancellable)
            await anyio.wait_all_tasks_blocked()
            app.start_soon(answers.ask, runtime, "noop", Noop())  # held behind the open
            await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert isinstance(answers.by_name["open"], anyio.get_cancelled_exc_class())
    assert isinstance(answers.by_name["noop"], RuntimeClosed)
    assert "shut down" in str(answers.by_name["noop"])


@pytest.mark.anyio
async def test_answers_behind_an_abandoned_append_fail_when_shutdown_stops_waiting() -> None:
    # The caller goes away while the runtime runs, so a runtime task waits for its append's
    # outcome; the shutdown bound passes first and cancels that task.
    journal = ManualJournal(start_appends=False)
    answers = Answers()
    runtime = Runtime(journal, shutdown_timeout_s=0.05)
    async with anyio.create_task_group() as app:
        async with runtime:
            await _opened(runtime, journal)
            async with anyio.create_task_group() as tg:
                tg.start_soon(answers.ask, runtime, "deposit", Deposit(10))
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()  # the deposit's caller goes away; its append is pending
            app.start_soon(answers.ask, runtime, "withdraw", Withdraw(1_000))  # held behind it
            await anyio.wait_all_tasks_blocked()
            assert "withdraw" not in answers.by_name
        await anyio.wait_all_tasks_blocked()  # the held answer is woken, not left waiting
        assert "withdraw" in answers.by_name
    assert isinstance(answers.by_name["deposit"], anyio.get_cancelled_exc_class())
    assert isinstance(answers.by_name["withdraw"], RuntimeClosed)
    assert "shut down" in str(answers.by_name["withdraw"])
    assert runtime.statistics().commands_in_flight == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_answers_come_back_in_the_order_they_were_decided(tmp_path: Path) -> None:
    # On asyncio, tasks woken together run in the order they were woken. (Trio picks the
    # order of tasks woken together itself, at random on purpose, so there the guarantee is
    # only that no answer comes before the events decided before it are durable.)
    async def decide_five(runtime: Runtime, commit: Any) -> list[str]:
        answers = Answers()
        async with anyio.create_task_group() as tg:
            tg.start_soon(answers.ask, runtime, "1 deposit", Deposit(10))
            tg.start_soon(answers.ask, runtime, "2 rejected", Withdraw(10_000))
            tg.start_soon(answers.ask, runtime, "3 no events", Noop())
            tg.start_soon(answers.state, runtime, "4 state")
            tg.start_soon(answers.ask, runtime, "5 deposit", Deposit(5))
            await commit()
        assert isinstance(answers.by_name["2 rejected"], CommandRejected)
        assert answers.by_name["4 state"] == Account("ada", 10, 1)
        return answers.order

    expected = ["1 deposit", "2 rejected", "3 no events", "4 state", "5 deposit"]
    manual = ManualJournal(start_appends=True)
    async with Runtime(manual) as runtime:
        await _opened(runtime, manual)

        async def commit_all() -> None:
            await anyio.wait_all_tasks_blocked()
            manual.commit()

        assert await decide_five(runtime, commit_all) == expected
    async with FileJournal(tmp_path) as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        assert await decide_five(runtime, anyio.lowlevel.checkpoint) == expected


@pytest.mark.anyio
async def test_held_answers_on_a_memory_journal_follow_what_was_decided_before_them(
    anyio_backend: str,
) -> None:
    # Unit tests run on MemoryJournal: a rejection, a command without events and a state read
    # decided behind in-flight deposits come back in their place among the replies on asyncio.
    # Trio picks the order of tasks run together itself (the decisions' and the answers'), so
    # there the guarantee checked is that none comes back before the events it was decided
    # against are committed.
    journal = MemoryJournal()
    # The version each command was decided against, and the events committed at that moment.
    decided: dict[Any, tuple[int, int]] = {}

    def recording_decide(state: Account, command: Any) -> Any:
        version = (1 if state.owner else 0) + state.deposits  # only Opened and Deposited here
        decided[command] = (version, journal.statistics().events)
        return decide(state, command)

    recorded = Aggregate("account", Account(), recording_decide, evolve, events=EVENTS)
    commands = {
        "1 deposit": Deposit(10),
        "2 rejected": Withdraw(10_000),
        "3 no events": Noop(),
        "5 deposit": Deposit(5),
    }
    answers: dict[str, Any] = {}
    committed_at_answer: dict[str, int] = {}
    order: list[str] = []

    async def ask(name: str) -> None:
        try:
            answers[name] = await runtime.ask(recorded, "42", commands[name])
        except CommandRejected as rejection:
            answers[name] = rejection
        committed_at_answer[name] = journal.statistics().events
        order.append(name)

    async def state(name: str) -> None:
        answers[name] = await runtime.state(recorded, "42")
        committed_at_answer[name] = journal.statistics().events
        order.append(name)

    async with journal, Runtime(journal) as runtime:
        await runtime.ask(recorded, "42", Open("ada"))
        async with anyio.create_task_group() as tg:
            for name in ("1 deposit", "2 rejected", "3 no events"):
                tg.start_soon(ask, name)
            tg.start_soon(state, "4 state")
            tg.start_soon(ask, "5 deposit")
    assert isinstance(answers["2 rejected"], CommandRejected)
    for name in ("2 rejected", "3 no events"):
        version, _ = decided[commands[name]]
        assert committed_at_answer[name] >= version, f"{name} answered before it was durable"
    for name in ("1 deposit", "5 deposit"):
        assert committed_at_answer[name] >= answers[name].version
    seen = 1 + answers["4 state"].deposits  # the version the state read saw
    assert committed_at_answer["4 state"] >= seen, "the state answered before it was durable"
    if anyio_backend == "asyncio":
        # Decided in the order they were started, behind the first deposit in flight.
        for name in ("2 rejected", "3 no events"):
            assert decided[commands[name]] == (2, 1), name
        assert answers["4 state"] == Account("ada", 10, 1)
        assert order == ["1 deposit", "2 rejected", "3 no events", "4 state", "5 deposit"]


@pytest.mark.anyio
async def test_an_exception_of_the_body_comes_out_unwrapped() -> None:
    journal = ManualJournal()

    async def overdraw() -> None:
        async with Runtime(journal) as runtime:
            await _opened(runtime, journal)
            await runtime.ask(account, "42", Withdraw(5))

    with pytest.raises(CommandRejected, match="insufficient funds"):
        await overdraw()


@pytest.mark.anyio
async def test_an_exception_group_of_the_body_comes_out_as_itself() -> None:
    # A task group in the body (the usual way to run callers) raises a group: it comes out
    # as that group, as it would without the runtime, not nested in a group of the runtime's.
    raised = ExceptionGroup("the body's callers", [ValueError("one"), KeyError("two")])

    async def fail(journal: MemoryJournal) -> None:
        async with Runtime(journal) as runtime:
            await runtime.ask(account, "42", Open("ada"))
            raise raised

    async with MemoryJournal() as journal:
        with pytest.raises(ExceptionGroup) as caught:
            await fail(journal)
        assert caught.value is raised
        with pytest.raises(ExceptionGroup) as caught:
            async with Runtime(journal), anyio.create_task_group():
                raise ValueError("a caller failed")
        [failure] = caught.value.exceptions
        assert isinstance(failure, ValueError), caught.value


@pytest.mark.anyio
async def test_a_runtime_owning_a_file_journal_closes_it_on_exit(tmp_path: Path) -> None:
    async with Runtime(FileJournal(tmp_path), owns_journal=True) as runtime:
        await runtime.ask(account, "42", Open("ada"))
    async with FileJournal(tmp_path) as journal, Runtime(journal) as runtime:
        assert await runtime.state(account, "42") == Account("ada")


@pytest.mark.anyio
async def test_told_commands_shutdown_cannot_deliver_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = ManualJournal(start_appends=True)  # never commits within the shutdown bound
    caplog.set_level(logging.WARNING, logger="eventfold.runtime")
    async with Runtime(journal, mailbox_bound=2, shutdown_timeout_s=0.05) as runtime:
        runtime.tell_nowait(account, "42", Open("ada"))
        for _ in range(9):
            runtime.tell_nowait(account, "42", Deposit(1))
        await anyio.wait_all_tasks_blocked()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    # Two wait for durability (the mailbox's bound); the third waits for room as it is being
    # delivered, and seven are still in the outbox: eight were never executed.
    assert (logging.ERROR, _starting("8 command(s) accepted by tell_nowait")) in messages
    assert (logging.WARNING, _starting("2 told command(s) were still in flight")) in messages


class _starting(str):
    """Equal to any string that starts with it."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(self)

    __hash__ = str.__hash__


@pytest.mark.anyio
async def test_a_command_cancelled_while_its_append_waits_for_room_leaves_nothing_behind() -> None:
    journal = ManualJournal(start_appends=True)
    answers = Answers()
    async with Runtime(journal) as runtime:
        await _opened(runtime, journal)
        journal.full = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(answers.ask, runtime, "deposit", Deposit(100))
            await anyio.wait_all_tasks_blocked()
            assert len(journal.queued) == 1
            tg.cancel_scope.cancel()  # its caller goes away before the append is placed
        assert journal.queued == []  # withdrawn: it will never be written
        journal.full = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(answers.ask, runtime, "next", Deposit(5))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert answers.by_name["next"].version == 2  # decided on the state before the deposit
        assert await runtime.state(account, "42") == Account("ada", 5, 1)
    assert [event.data for event in journal.log] == [{"owner": "ada"}, {"amount": 5}]


@pytest.mark.anyio
async def test_an_actor_decides_nothing_while_its_append_waits_for_room() -> None:
    # Two in flight at most: the third and fourth callers wait for a slot. One of them is
    # handed a slot while the second command's append waits for room: it gives it back and
    # waits until that append is placed, so nothing is decided against an unplaced append.
    journal = ManualJournal(start_appends=True)
    answers = Answers()
    async with Runtime(journal, mailbox_bound=2) as runtime:
        await _opened(runtime, journal)
        async with anyio.create_task_group() as tg:
            for name, amount in (("first", 1), ("second", 2), ("third", 3)):
                tg.start_soon(answers.ask, runtime, name, Deposit(amount))
                await anyio.wait_all_tasks_blocked()
            tg.start_soon(answers.ask, runtime, "withdraw", Withdraw(6))
            await anyio.wait_all_tasks_blocked()
            assert journal.pending == 2  # first and second; the third and the withdrawal wait
            journal.full = True
            journal.commit(1)  # the first is answered: the third is decided, and waits for room
            await anyio.wait_all_tasks_blocked()
            assert len(journal.queued) == 1
            journal.commit(1)  # the second is answered: the withdrawal is handed its slot...
            await anyio.wait_all_tasks_blocked()
            assert "withdraw" not in answers.by_name  # ...and is not decided yet
            assert len(journal.queued) == 1
            assert journal.pending == 0
            journal.full = False
            journal.make_room()  # the third is placed; then the withdrawal is decided
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        versions = [answers.by_name[name].version for name in ("first", "second", "third")]
        assert versions == [2, 3, 4]
        # Decided against the third's deposit (a balance of 6, not 3): it was not rejected.
        assert answers.by_name["withdraw"].version == 5
        assert await runtime.state(account, "42") == Account("ada", 0, 3)


@pytest.mark.anyio
async def test_an_append_placed_as_its_caller_goes_away_still_counts() -> None:
    journal = ManualJournal(start_appends=True)
    answers = Answers()
    async with Runtime(journal) as runtime:
        await _opened(runtime, journal)
        journal.full = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(answers.ask, runtime, "deposit", Deposit(100))
            await anyio.wait_all_tasks_blocked()
            journal.full = False
            journal.make_room()  # placed...
            tg.cancel_scope.cancel()  # ...and its caller goes away before it hears so
        assert isinstance(answers.by_name["deposit"], anyio.get_cancelled_exc_class())
        async with anyio.create_task_group() as tg:
            tg.start_soon(answers.ask, runtime, "next", Deposit(5))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert answers.by_name["next"].version == 3  # decided after the deposit
        assert await runtime.state(account, "42") == Account("ada", 105, 2)
    assert [event.data for event in journal.log][1:] == [{"amount": 100}, {"amount": 5}]
