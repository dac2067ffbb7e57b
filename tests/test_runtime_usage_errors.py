"""Wrong arguments and wrong answers from user code fail with errors that say what to do."""

from __future__ import annotations

import pathlib
from datetime import UTC, date, datetime, tzinfo
from typing import Any

import anyio
import pytest

from journals import InvalidStreamId, JournalClosed, MemoryJournal, StreamChunk
from runtime import Aggregate, LifecycleEvent, Runtime
from runtime._exceptions import InvalidDecision, VersionNotReached
from runtime.testing import ManualClock

from .test_runtime_bank import EVENTS, Account, Deposit, Deposited, Noop, Open, account, evolve
from .test_runtime_manual_journal import ManualJournal

# -- state_at beyond the entity's history ----------------------------------------------------


@pytest.mark.anyio
async def test_state_at_a_version_the_entity_never_had_is_refused() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(account, "42", Open("ada"))
        assert await rt.state_at(account, "42", version=1) == Account("ada")
        with pytest.raises(
            VersionNotReached,
            match=r"'account-42' has 1 durable event, so it has no durable version 5 \(not "
            r"reached yet, or never\): state_at reads only durable events; ask for a version "
            r"from 0 \(the initial state\) to 1",
        ) as raised:
            await rt.state_at(account, "42", version=5)
        assert (raised.value.stream_id, raised.value.version, raised.value.durable_version) == (
            "account-42",
            5,
            1,
        )
        assert isinstance(raised.value, ValueError)


@pytest.mark.anyio
@pytest.mark.parametrize("starts", [False, True], ids=["append", "start_append"])
async def test_state_at_reads_only_durable_events_and_says_so(starts: bool) -> None:
    # A told command's events are placed in the journal and not durable yet: the entity has
    # the version in memory, and state_at must neither read it nor say it was never reached.
    journal = ManualJournal(start_appends=starts)
    async with Runtime(journal) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, account, "42", Open("ada"))
            await anyio.wait_all_tasks_blocked()
            journal.commit()
        await rt.tell(account, "42", Deposit(5))
        await anyio.wait_all_tasks_blocked()
        assert journal.pending == 1
        with pytest.raises(
            VersionNotReached,
            match=r"'account-42' has 1 durable event, so it has no durable version 2 \(not "
            r"reached yet, or never\): state_at reads only durable events; ask for a version "
            r"from 0 \(the initial state\) to 1",
        ):
            await rt.state_at(account, "42", version=2)
        assert await rt.state_at(account, "42", at=datetime(9999, 1, 1, tzinfo=UTC)) == Account(
            "ada"
        )
        journal.commit()
        await anyio.wait_all_tasks_blocked()
        assert await rt.state_at(account, "42", version=2) == Account("ada", 5, 1)


@pytest.mark.anyio
async def test_state_at_a_version_of_an_entity_without_events_is_refused() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        assert await rt.state_at(account, "nobody", version=0) == Account()
        with pytest.raises(VersionNotReached, match="'account-nobody' has no events"):
            await rt.state_at(account, "nobody", version=3)


@pytest.mark.anyio
async def test_state_at_refuses_a_version_beyond_the_end_without_folding_the_history() -> None:
    folded: list[object] = []

    def counting(state: Account, event: Any) -> Account:
        folded.append(event)
        return evolve(state, event)

    counted = Aggregate("account", Account(), account.decide, counting, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        for command in (Open("ada"), Deposit(1), Deposit(2)):
            await rt.ask(counted, "42", command)
        folded.clear()
        with pytest.raises(VersionNotReached, match="has 3 durable events"):
            await rt.state_at(counted, "42", version=4)
        assert folded == []
        assert await rt.state_at(counted, "42", version=3) == Account("ada", 3, 2)
        assert len(folded) == 3


class ShortReads(MemoryJournal):
    """Once ``short`` is set, reads end at version 1 whatever ``stream_version`` says (a
    journal that loses events under the reader, say)."""

    short = False

    async def read_chunk(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> StreamChunk | None:
        if not self.short:
            return await super().read_chunk(stream_id, from_version, to_version)
        if from_version > 1:
            return None
        return await super().read_chunk(stream_id, from_version, 1)


@pytest.mark.anyio
async def test_state_at_a_version_the_journal_does_not_give_back_is_refused() -> None:
    # The journal says 3 events are durable, then reads back 1: answering the state at 1 as
    # the state at 3 would be a wrong answer, not a missing one.
    async with ShortReads() as journal, Runtime(journal) as rt:
        for command in (Open("ada"), Deposit(1), Deposit(2)):
            await rt.ask(account, "42", command)
        journal.short = True
        with pytest.raises(VersionNotReached, match="has 1 durable event, so it has no") as raised:
            await rt.state_at(account, "42", version=3)
        assert (raised.value.version, raised.value.durable_version) == (3, 1)


# -- aggregate names -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_second_aggregate_with_a_taken_name_is_refused_even_after_eviction() -> None:
    first = Aggregate("account", Account(), account.decide, evolve, events=EVENTS)
    second = Aggregate("account", Account(), account.decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal, max_live_actors=1) as rt:
        await rt.ask(first, "x", Open("ada"))
        await rt.ask(first, "y", Open("bob"))  # evicts account-x
        assert rt.statistics().live_actors == 1
        with pytest.raises(ValueError, match="aggregate names must be unique in a runtime"):
            await rt.ask(second, "x", Deposit(1))
        with pytest.raises(ValueError, match="aggregate names must be unique in a runtime"):
            await rt.ask(second, "new", Open("cy"))
        assert await rt.state(first, "x") == Account("ada")
        assert await journal.stream_version("account-new") == 0


@pytest.mark.anyio
async def test_a_second_running_runtime_on_a_journal_refuses_an_aggregate_the_first_serves() -> (
    None
):
    other = Aggregate("ledger", Account(), account.decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal:
        async with Runtime(journal) as first, Runtime(journal) as second:
            await first.ask(account, "42", Open("ada"))
            # Without the refusal the second would answer a state without the first's events.
            with pytest.raises(ValueError, match=r"'account' is served by another running"):
                await second.ask(account, "42", Deposit(1))
            with pytest.raises(ValueError, match=r"one Runtime per journal"):
                await second.state(account, "7")
            second.tell_nowait(account, "42", Deposit(2))  # refused at delivery
            await second.ask(other, "42", Open("bob"))  # another name: served
            with pytest.raises(ValueError, match=r"'ledger' is served by another running"):
                await first.ask(other, "42", Deposit(1))
            assert await second.state_at(account, "42", version=1) == Account("ada")
            await first.ask(account, "42", Deposit(3))
        assert second.statistics().outbox_undelivered == 1
        async with Runtime(journal) as third:  # The first has stopped: the name is free.
            assert await third.state(account, "42") == Account("ada", 3, 1)
            async with MemoryJournal() as elsewhere, Runtime(elsewhere) as fourth:
                await fourth.ask(account, "42", Open("cy"))  # Another journal, its own stream.


# -- arguments of the runtime's calls --------------------------------------------------------


@pytest.mark.anyio
async def test_state_at_names_a_wrong_entity_id_or_aggregate() -> None:
    wrong: Any = 42
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(TypeError, match=r"entity ids are str, not int: pass str\(42\)"):
            await rt.state_at(account, wrong, version=1)
        with pytest.raises(TypeError, match="the first argument must be an Aggregate"):
            await rt.state_at("account", "42", version=1)  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("entity_id", "message"),
    [("x" * 300, "stream id is 308 bytes long"), ("\ud800", "is not valid UTF-8")],
    ids=["too-long", "not-utf-8"],
)
@pytest.mark.parametrize(
    "past", [{"version": 0}, {"version": 1}, {"at": datetime(2024, 1, 1, tzinfo=UTC)}]
)
async def test_state_at_refuses_an_entity_id_no_journal_takes_at_every_version(
    entity_id: str, message: str, past: dict[str, Any]
) -> None:
    # Version 0 reads no event, yet answering initial would say the entity could exist.
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(InvalidStreamId, match=message):
            await rt.state_at(account, entity_id, **past)


@pytest.mark.anyio
async def test_state_at_version_0_needs_the_journal_open_as_every_version_does() -> None:
    async with MemoryJournal() as journal:
        runtime = Runtime(journal)
        assert await runtime.state_at(account, "42", version=0) == Account()
    for version in (0, 1):
        with pytest.raises(JournalClosed, match="the journal is closed"):
            await runtime.state_at(account, "42", version=version)


@pytest.mark.anyio
@pytest.mark.parametrize("version", [True, 1.5, 1.0, "1"])
async def test_state_at_refuses_a_version_that_is_not_a_whole_number(version: Any) -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(
            ValueError,
            match=rf"version must be >= 0 and a whole number \(an int\), not {version!r}",
        ):
            await rt.state_at(account, "42", version=version)


class _NoOffset(tzinfo):
    """A time zone that gives no offset: a datetime with it is naive, as Python defines it."""

    def utcoffset(self, moment: datetime | None) -> None:
        return None

    def dst(self, moment: datetime | None) -> None:
        return None

    def tzname(self, moment: datetime | None) -> str:
        return "none"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("at", "error", "message"),
    [
        ("2024-01-01T00:00:00+00:00", TypeError, "timezone-aware datetime, not str"),
        (1_700_000_000, TypeError, "at must be a timezone-aware datetime, not int"),
        (date(2024, 1, 1), TypeError, r"at must be a datetime, not a date .* a whole day"),
        (datetime(2024, 1, 1, tzinfo=_NoOffset()), ValueError, "timezone-aware"),
    ],
    ids=["str", "int", "date", "tzinfo-without-offset"],
)
async def test_state_at_refuses_a_moment_that_is_not_an_aware_datetime(
    at: Any, error: type[Exception], message: str
) -> None:
    # Refused whether or not the entity has events to compare the moment with.
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(account, "42", Open("ada"))
        for entity_id in ("42", "nobody"):
            with pytest.raises(error, match=message):
                await rt.state_at(account, entity_id, at=at)


def test_reset_names_a_wrong_entity_id_or_aggregate() -> None:
    wrong: Any = 42
    rt = Runtime(MemoryJournal())
    with pytest.raises(TypeError, match=r"entity ids are str, not int: pass str\(42\)"):
        rt.reset(account, wrong)
    with pytest.raises(TypeError, match="the first argument must be an Aggregate"):
        rt.reset("account", "42")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["journal-dir", pathlib.Path("journal-dir")])
def test_a_runtime_given_a_path_says_to_open_a_file_journal(path: Any) -> None:
    with pytest.raises(TypeError, match=r"not a path .*async with FileJournal\(path\) as journal"):
        Runtime(path)


def test_a_runtime_given_something_else_names_the_journals() -> None:
    with pytest.raises(TypeError, match=r"MemoryJournal\(\) or FileJournal\(path\)\), not dict"):
        Runtime({})  # type: ignore[arg-type]


# -- what decide returns ---------------------------------------------------------------------


def _single(state: Account, command: Any) -> Any:
    return Deposited(command.amount)  # forgot the brackets


def _forgetful(state: Account, command: Any) -> Any:
    if isinstance(command, Deposit):
        [Deposited(command.amount)]  # forgot the return
        return None
    return []


single = Aggregate("single", Account(), _single, evolve, events=EVENTS)
forgetful = Aggregate("forgetful", Account(), _forgetful, evolve, events=EVENTS)


@pytest.mark.anyio
async def test_decide_returning_one_event_is_a_crash_that_says_to_return_a_list() -> None:
    notices: list[LifecycleEvent] = []
    clock = ManualClock(autojump=True)  # the restart backoff passes at once
    async with (
        MemoryJournal() as journal,
        Runtime(journal, clock=clock, on_lifecycle=notices.append) as rt,
    ):
        with pytest.raises(
            InvalidDecision,
            match=r"decide of aggregate 'single' returned a Deposited \(Deposited\(amount=1\)\); "
            r"it must return a list of events: \[event\] for one",
        ):
            await rt.ask(single, "42", Deposit(1))
        assert [n.kind for n in notices] == ["started", "crashed"]
        assert rt.statistics().crashes == 1
        assert await journal.stream_version("single-42") == 0
        assert await rt.state(single, "42") == Account()  # restarted


@pytest.mark.anyio
async def test_decide_returning_none_is_a_crash_that_says_a_return_is_missing() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(
            InvalidDecision,
            match=r"decide of aggregate 'forgetful' returned None \(is a 'return' missing\?\)",
        ):
            await rt.ask(forgetful, "42", Deposit(1))
        assert rt.statistics().crashes == 1


@pytest.mark.parametrize("returned", [0, {}, "", False, set()], ids=repr)
@pytest.mark.anyio
async def test_decide_returning_something_empty_but_no_list_is_a_crash(returned: object) -> None:
    def decide(state: Account, command: Any) -> Any:
        return returned

    empty = Aggregate("empty", Account(), decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(InvalidDecision, match=r"returned a .*; it must return a list"):
            await rt.ask(empty, "42", Deposit(1))
        assert rt.statistics().crashes == 1
        assert rt.statistics().commands == 0


@pytest.mark.anyio
async def test_decide_returning_an_empty_list_is_still_no_events() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        result = await rt.ask(forgetful, "42", Noop())
        assert (result.version, result.events) == (0, ())
        assert rt.statistics().crashes == 0


@pytest.mark.anyio
async def test_ask_names_a_wrong_entity_id_or_aggregate() -> None:
    wrong: Any = 42
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(TypeError, match="entity ids are str, not int"):
            await rt.ask(account, wrong, Deposit(1))
        with pytest.raises(TypeError, match="the first argument must be an Aggregate"):
            await rt.ask("account", "42", Deposit(1))  # type: ignore[arg-type]


# -- statistics outside the runtime's lifetime -----------------------------------------------


@pytest.mark.anyio
async def test_uptime_is_zero_before_the_runtime_starts() -> None:
    clock = ManualClock(start=1000.0)
    async with MemoryJournal() as journal:
        rt = Runtime(journal, clock=clock)
        assert rt.statistics().uptime_s == 0.0
        assert rt.statistics().commands_per_s == 0.0
        async with rt:
            clock.advance(2.0)
            assert rt.statistics().uptime_s == 2.0


@pytest.mark.anyio
async def test_uptime_stops_counting_when_the_runtime_exits() -> None:
    clock = ManualClock()
    async with MemoryJournal() as journal:
        async with Runtime(journal, clock=clock) as rt:
            clock.advance(3.0)
        clock.advance(100.0)
        assert rt.statistics().uptime_s == 3.0


@pytest.mark.anyio
async def test_no_actor_is_live_after_the_runtime_exits_and_the_counters_stay() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            for entity in ("1", "2", "3"):
                await rt.ask(account, entity, Open("ada"))
            assert rt.statistics().live_actors == 3
        after = rt.statistics()
        assert (after.live_actors, after.busy_actors, after.mailbox_depth_max) == (0, 0, 0)
        assert (after.commands, after.activations) == (3, 3)


@pytest.mark.parametrize(
    "returned",
    [
        {Deposited(1): "x"},
        {Deposited(1): "x", Deposited(2): "y"},
        {Deposited(1), Deposited(2)},
        {0: Deposited(1)},  # Indexes like a list of one event.
    ],
    ids=repr,
)
@pytest.mark.anyio
async def test_decide_returning_a_mapping_or_a_set_of_events_is_a_crash(returned: object) -> None:
    def decide(state: Account, command: Any) -> Any:
        return returned

    unordered = Aggregate("unordered", Account(), decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(
            InvalidDecision, match=r"returned a (dict|set) .*; it must return a list"
        ):
            await rt.ask(unordered, "42", Deposit(1))
        assert rt.statistics().crashes == 1
        assert await journal.stream_version("unordered-42") == 0
