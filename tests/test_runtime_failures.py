"""Journal failures mid-pipeline, refused events, conflicts, cancellation, mailbox timeouts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from journals import (
    ConcurrencyError,
    EventEncodingError,
    JournalClosed,
    JournalFailed,
    MemoryJournal,
    NewEvent,
)
from runtime import (
    ActorRuntimeError,
    Aggregate,
    CommandRejected,
    MailboxTimeout,
    Runtime,
    RuntimeClosed,
)
from runtime import _abandoned as runtime_abandoned

from .test_runtime_bank import Account, Deposit, Noop, Open, Withdraw, account
from .test_runtime_manual_journal import ManualJournal


@pytest.fixture(params=[False, True], ids=["append", "start_append"])
def starts(request: pytest.FixtureRequest) -> bool:
    """Whether the journal places appends through ``start_append`` (no coroutine each)."""
    return bool(request.param)


class Outcomes:
    """Collects what each concurrent caller got back."""

    def __init__(self) -> None:
        self.by_name: dict[str, Any] = {}

    async def ask(self, runtime: Runtime, name: str, command: Any, entity: str = "42") -> None:
        try:
            self.by_name[name] = await runtime.ask(account, entity, command)
        except Exception as error:
            self.by_name[name] = error

    async def state(self, runtime: Runtime, name: str) -> None:
        try:
            self.by_name[name] = await runtime.state(account, "42")
        except Exception as error:
            self.by_name[name] = error


@pytest.mark.anyio
async def test_journal_failure_mid_pipeline_fails_every_unanswered_command(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(outcomes.ask, runtime, "open", Open("ada"))
        await anyio.wait_all_tasks_blocked()
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        for name, command in [
            ("deposit-10", Deposit(10)),
            ("deposit-20", Deposit(20)),
            ("withdraw-1000", Withdraw(1000)),
            ("deposit-5", Deposit(5)),
        ]:
            tg.start_soon(outcomes.ask, runtime, name, command)
            await anyio.wait_all_tasks_blocked()
        # A read of a state that holds events not durable yet waits for them, and fails
        # with them: the state it read is one the journal never held.
        tg.start_soon(outcomes.state, runtime, "state")
        await anyio.wait_all_tasks_blocked()
        assert journal.pending == 3  # pipelined: three appends placed, none durable
        journal.commit(1)
        await anyio.wait_all_tasks_blocked()
        assert outcomes.by_name["deposit-10"].version == 2
        assert "deposit-20" not in outcomes.by_name  # no reply for a non-durable event
        assert "withdraw-1000" not in outcomes.by_name  # decided against non-durable state
        assert "state" not in outcomes.by_name
        journal.fail(OSError(5, "fsync failed"))
        await anyio.wait_all_tasks_blocked()
        for name in ["deposit-20", "withdraw-1000", "deposit-5", "state"]:
            assert isinstance(outcomes.by_name[name], JournalFailed), name
        # Rebuilt from what is durable, never from the unacknowledged events.
        assert await runtime.state(account, "42") == Account("ada", 10, 1)
        assert runtime.statistics().activations == 2


@pytest.mark.anyio
async def test_commands_whose_events_the_journal_lost_are_counted(
    starts: bool, caplog: pytest.LogCaptureFixture
) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "open", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(outcomes.ask, runtime, "deposit", Deposit(1))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(outcomes.ask, runtime, "noop", Noop())  # waits for the deposit
            await anyio.wait_all_tasks_blocked()
            await runtime.tell(account, "42", Deposit(2))
            await anyio.wait_all_tasks_blocked()
            assert journal.pending == 2
            journal.fail(OSError(5, "fsync failed"))
        assert isinstance(outcomes.by_name["deposit"], JournalFailed)
        assert isinstance(outcomes.by_name["noop"], JournalFailed)
        statistics = runtime.statistics()
        # The asked and the told deposit; the no-op wrote nothing, and lost nothing.
        assert statistics.append_failures == 2
        assert (statistics.commands, statistics.crashes, statistics.rejections) == (1, 0, 0)
    # A failed journal fails every later command: it is logged at error level.
    assert any(
        r.getMessage().startswith("told command to 'account-42' failed: the journal failed")
        and r.levelno == logging.ERROR
        for r in caplog.records
    )


@pytest.mark.anyio
async def test_a_rejection_waits_until_earlier_events_are_durable(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(outcomes.ask, runtime, "open", Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(outcomes.ask, runtime, "withdraw", Withdraw(1))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(outcomes.ask, runtime, "deposit", Deposit(0))
        await anyio.wait_all_tasks_blocked()
        assert outcomes.by_name == {}  # the rejection waits for Opened to be durable
        journal.commit(1)
        await anyio.wait_all_tasks_blocked()
        assert isinstance(outcomes.by_name["withdraw"], CommandRejected)
        assert "deposit" not in outcomes.by_name
        journal.commit()


@dataclass(frozen=True)
class Tag:
    values: frozenset[str]


@dataclass(frozen=True)
class Tagged:
    values: frozenset[str]


def tag_decide(state: int, command: Tag) -> list[Tagged]:
    return [Tagged(command.values)]


def tag_evolve(state: int, event: Tagged) -> int:
    return state + 1


tags = Aggregate("tags", 0, tag_decide, tag_evolve, events={"Tagged": Tagged})


@pytest.mark.anyio
async def test_events_the_journal_refuses_leave_the_state_unchanged() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        with pytest.raises(EventEncodingError, match="cannot be encoded as JSON"):
            await runtime.ask(tags, "t", Tag(frozenset({"a"})))
        assert await runtime.state(tags, "t") == 0
        assert runtime.statistics().crashes == 0
        assert runtime.statistics().append_failures == 1
    assert journal.statistics().events == 0


@pytest.mark.anyio
async def test_a_foreign_write_is_a_conflict_and_the_actor_is_rebuilt() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        await journal.append(
            "account-42", [NewEvent("account.Deposited/1", {"amount": 7})], expected_version=1
        )
        with pytest.raises(ConcurrencyError, match="not at the expected version 1"):
            await runtime.ask(account, "42", Deposit(1))
        assert runtime.statistics().append_failures == 1
        result = await runtime.ask(account, "42", Deposit(1))
        assert result.version == 3
        assert await runtime.state(account, "42") == Account("ada", 8, 2)


async def _open_and_abandon(runtime: Runtime) -> None:
    """Ask to open account 42 and cancel the caller while its append waits for durability."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.ask, account, "42", Open("ada"))
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()  # the cancellation propagates no further than the group


@pytest.mark.anyio
async def test_a_caller_cancelled_while_waiting_for_durability(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        await _open_and_abandon(runtime)  # the caller goes away
        assert journal.pending == 1  # its append did not go away
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "withdraw", Withdraw(5))
            await anyio.wait_all_tasks_blocked()
            assert outcomes.by_name == {}  # decided against the abandoned command's events
            journal.commit()
        assert isinstance(outcomes.by_name["withdraw"], CommandRejected)
        # The abandoned command landed: the actor kept its state, no rebuild was needed.
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "deposit", Deposit(2))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        assert outcomes.by_name["deposit"].version == 2
        assert await runtime.state(account, "42") == Account("ada", 2, 1)
        assert runtime.statistics().activations == 1


@pytest.mark.anyio
async def test_an_abandoned_append_that_fails_fails_what_depended_on_it(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        await _open_and_abandon(runtime)
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "withdraw", Withdraw(5))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(outcomes.ask, runtime, "deposit", Deposit(1))
            await anyio.wait_all_tasks_blocked()
            journal.fail(OSError(5, "fsync failed"))
        assert isinstance(outcomes.by_name["deposit"], JournalFailed)
        assert isinstance(outcomes.by_name["withdraw"], JournalFailed)
        assert await runtime.state(account, "42") == Account()  # rebuilt from what is durable
        # The deposit's events were lost; the opening's caller had gone (it got its
        # cancellation) and the rejection had none to lose.
        assert runtime.statistics().append_failures == 1


class _FailedReads(ManualJournal):
    """A journal whose reads fail while ``reads_fail`` is set, as a failed one's may."""

    reads_fail = False

    async def stream_version(self, stream_id: str) -> int:
        if self.reads_fail:
            raise JournalFailed(f"failed earlier: {self._failure!r}")
        return await super().stream_version(stream_id)


@pytest.mark.anyio
async def test_an_abandoned_append_that_fails_alone_fails_the_answer_behind_it(
    starts: bool,
) -> None:
    # No later append fails with it: only the abandoned append's own outcome (or, through
    # Journal.append, the journal's refusal to say how far the stream got) tells the
    # rejection behind it that the account it was decided against was never opened.
    journal = _FailedReads(start_appends=starts)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        await _open_and_abandon(runtime)
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "withdraw", Withdraw(5))
            await anyio.wait_all_tasks_blocked()
            assert outcomes.by_name == {}
            journal.fail(OSError(5, "fsync failed"))
            journal.reads_fail = True
        assert isinstance(outcomes.by_name["withdraw"], JournalFailed)
        assert "fsync failed" in str(outcomes.by_name["withdraw"])
        journal.reads_fail = False
        # Nor is the opening in the state: the actor is rebuilt from what is durable.
        assert await runtime.state(account, "42") == Account()
    assert journal.log == []


@pytest.mark.anyio
async def test_an_abandoned_append_that_never_settles_is_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through Journal.append the runtime cannot await the outcome once the caller is gone: it
    # watches the stream's durable version, and gives up after ABANDONED_APPEND_WAIT_S.
    monkeypatch.setattr(runtime_abandoned, "ABANDONED_APPEND_WAIT_S", 0.05)
    journal = ManualJournal(start_appends=False)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        await _open_and_abandon(runtime)
        await outcomes.ask(runtime, "withdraw", Withdraw(5))
        assert isinstance(outcomes.by_name["withdraw"], ActorRuntimeError)
        assert "outcome is unknown" in str(outcomes.by_name["withdraw"])
        journal.commit()  # it lands after all: the rebuilt actor sees it
        assert await runtime.state(account, "42") == Account("ada")
        assert runtime.statistics().activations == 2


@pytest.mark.anyio
async def test_a_started_abandoned_append_is_awaited_for_as_long_as_it_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A started append is placed for certain, so its outcome is awaited itself: the answers
    # behind it wait for it, however long, and the actor is not rebuilt meanwhile.
    monkeypatch.setattr(runtime_abandoned, "ABANDONED_APPEND_WAIT_S", 0.05)
    journal = ManualJournal(start_appends=True)
    outcomes = Outcomes()
    async with Runtime(journal) as runtime:
        await _open_and_abandon(runtime)
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.ask, runtime, "withdraw", Withdraw(5))
            await anyio.sleep(0.2)  # four times the limit of the Journal.append path
            assert outcomes.by_name == {}
            journal.commit()
        assert isinstance(outcomes.by_name["withdraw"], CommandRejected)
        await anyio.wait_all_tasks_blocked()
        # Settled and durable: the actor keeps no outcome (nor the batch behind it) alive.
        assert runtime._actors["account-42"].last_outcome is None
        assert await runtime.state(account, "42") == Account("ada")
        assert runtime.statistics().activations == 1


# Shutdown's wait for commands in flight is shielded from cancellation: a shutdown that wrongly
# waits out its timeout is seen once the timeout has passed, so the tests keep it short.
SHUTDOWN_TIMEOUT_S = 2.0


@pytest.mark.anyio
async def test_ask_times_out_waiting_for_room_without_executing(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    async with Runtime(journal, mailbox_bound=1, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            # A deposit let in beyond the bound would wait for a commit that never comes.
            with (
                anyio.fail_after(2),
                pytest.raises(
                    MailboxTimeout, match=r"within 0\.05 s: its mailbox stayed full"
                ) as caught,
            ):
                await runtime.ask(account, "42", Deposit(5), timeout_s=0.05)
            assert isinstance(caught.value, TimeoutError)
            assert caught.value.waited_for == "room"
            assert "was not executed" in str(caught.value)
            journal.commit()
        assert await runtime.state(account, "42") == Account("ada", 0, 0)
        assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_shutdown_finishes_commands_in_flight(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    exited = False
    exited_once_settled: list[bool] = []
    async with anyio.create_task_group() as tg:
        async with Runtime(
            journal, mailbox_bound=1, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S
        ) as runtime:
            tg.start_soon(outcomes.ask, runtime, "open", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(outcomes.ask, runtime, "waiting", Deposit(1))
            await anyio.wait_all_tasks_blocked()

            async def commit_later() -> None:
                await anyio.wait_all_tasks_blocked()  # leaving waits for the open
                journal.commit()
                await anyio.wait_all_tasks_blocked()
                exited_once_settled.append(exited)

            tg.start_soon(commit_later)
        exited = True
        # Leaving waited for the command in flight; the one still waiting for room was
        # not accepted.
        assert outcomes.by_name["open"].version == 1
        assert isinstance(outcomes.by_name["waiting"], RuntimeClosed)
    # And it stopped waiting as soon as that command was answered, not at its timeout.
    assert exited_once_settled == [True], "shutdown waited on after the last answer"
    assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_shutdown_waits_for_the_last_of_several_commands_in_flight(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    exited = False
    exited_once_settled: list[bool] = []
    with anyio.fail_after(SHUTDOWN_TIMEOUT_S + 3):
        async with anyio.create_task_group() as tg:
            async with Runtime(journal, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S) as runtime:
                for entity in ["1", "2"]:
                    tg.start_soon(outcomes.ask, runtime, entity, Open(entity), entity)
                    await anyio.wait_all_tasks_blocked()

                async def commit_one_at_a_time() -> None:
                    for _ in range(2):
                        await anyio.wait_all_tasks_blocked()
                        journal.commit(1)
                    await anyio.wait_all_tasks_blocked()
                    exited_once_settled.append(exited)

                tg.start_soon(commit_one_at_a_time)
            exited = True
            # Not left when the first was answered: the second was still in flight.
            assert sorted(outcomes.by_name) == ["1", "2"], "left with a command in flight"
            assert [outcomes.by_name[entity].version for entity in ["1", "2"]] == [1, 1]
    assert exited_once_settled == [True], "shutdown waited on after the last answer"
    assert journal.statistics().events == 2


@pytest.mark.anyio
async def test_shutdown_is_bounded_when_the_journal_hangs(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes = Outcomes()
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(5):
            async with Runtime(journal, shutdown_timeout_s=0.05) as runtime:
                tg.start_soon(outcomes.ask, runtime, "open", Open("ada"))
                await anyio.wait_all_tasks_blocked()
        assert outcomes.by_name == {}
        journal.fail(OSError("disk gone"))
    assert isinstance(outcomes.by_name["open"], JournalFailed)


@pytest.mark.anyio
async def test_the_journal_is_closed_only_when_owned() -> None:
    journal = MemoryJournal()
    async with journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(account, "42", Open("ada"))
        await journal.append("other", [NewEvent("x", {})], expected_version=0)
    owned = MemoryJournal()
    async with Runtime(owned, owns_journal=True) as runtime:
        await runtime.ask(account, "42", Open("ada"))
    with pytest.raises(JournalClosed, match="closed"):
        await owned.append("other", [NewEvent("x", {})], expected_version=0)


@pytest.mark.anyio
async def test_waiters_time_out_by_their_own_deadlines_and_the_rest_get_in(starts: bool) -> None:
    journal = ManualJournal(start_appends=starts)
    outcomes: dict[str, Any] = {}

    async def ask(name: str, timeout_s: float | None) -> None:
        try:
            outcomes[name] = await runtime.ask(account, "42", Deposit(1), timeout_s=timeout_s)
        except MailboxTimeout as timeout:
            outcomes[name] = timeout

    async with Runtime(journal, mailbox_bound=1) as runtime, anyio.create_task_group() as tg:
        tg.start_soon(ask, "holder", None)
        await anyio.wait_all_tasks_blocked()
        for name, timeout_s in [("short", 0.01), ("patient", None), ("medium", 0.05)]:
            tg.start_soon(ask, name, timeout_s)
            await anyio.wait_all_tasks_blocked()
        await anyio.sleep(0.1)
        # The callers whose deadline passed are woken by then, but may run only after this
        # task does (a loop that ran late wakes every timer at once): let them record it.
        await anyio.wait_all_tasks_blocked()
        assert isinstance(outcomes["short"], MailboxTimeout)
        assert isinstance(outcomes["medium"], MailboxTimeout)
        assert "patient" not in outcomes
        assert runtime.statistics().callers_waiting_for_room == 1  # expired ones not counted
        journal.commit()  # the holder answers; its slot goes to the patient caller
        await anyio.wait_all_tasks_blocked()
        journal.commit()
    assert outcomes["holder"].version == 1
    assert outcomes["patient"].version == 2
    assert journal.statistics().events == 2
