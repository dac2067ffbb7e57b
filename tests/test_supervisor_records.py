"""Supervision records over time: when a crash is forgotten, when an activation is a restart,
and what is not a crash at all (a journal error while activating)."""

from __future__ import annotations

import gc
import math
import traceback
import weakref
from collections import deque
from dataclasses import dataclass, replace

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journals import JournalError, MemoryJournal, NewEvent, StreamChunk
from runtime import (
    Aggregate,
    EntityStopped,
    LifecycleEvent,
    RestartPolicy,
    Runtime,
    decide_after_crash,
)
from runtime._supervision import Supervised, detached, forget_old_crashes
from runtime.testing import ManualClock

from .journal_doubles import GatedActivations
from .test_runtime_bank import Deposit, Explode, Open, account

POLICY = RestartPolicy(
    max_restarts=3, period_s=60, backoff_initial_s=1, backoff_multiplier=2, backoff_max_s=3
)


def test_a_stopped_entity_is_forgotten_once_its_cool_down_and_period_have_passed() -> None:
    failure = RuntimeError("boom")
    table = {
        "cooled": Supervised(deque([0.0]), 10.0, True, 10.0, failure),
        "cooling": Supervised(deque([0.0]), 30.0, True, 30.0, failure),
        "until reset": Supervised(deque([0.0]), math.inf, True, math.inf, failure),
        "recent crash": Supervised(deque([15.0]), 16.0, True, 16.0, failure),
    }
    forget_old_crashes(table, period_s=10, now=20.0)
    assert sorted(table) == ["cooling", "recent crash", "until reset"]
    forget_old_crashes(table, period_s=10, now=30.0)
    assert sorted(table) == ["until reset"]


@given(
    # Whole seconds, so that crashes fall exactly one period apart too.
    gaps=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=40),
    max_restarts=st.integers(min_value=0, max_value=8),
    cooldown_s=st.sampled_from([None, 0.0, 15.0]),
)
def test_a_record_decides_each_crash_as_the_pure_decision_does(
    gaps: list[int], max_restarts: int, cooldown_s: float | None
) -> None:
    # The record keeps its crashes in place (at most the max_restarts + 1 that can decide
    # anything), where decide_after_crash is handed them all: the same crashes at the same
    # times must give the same decisions.
    policy = replace(POLICY, max_restarts=max_restarts, period_s=30, cooldown_s=cooldown_s)
    record = Supervised(deque(maxlen=max_restarts + 1), 0.0, False, 0.0, RuntimeError())
    history: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        decision = decide_after_crash(policy, history, now)
        history.append(now)
        stop = record.record(policy, now, RuntimeError())
        assert (stop, record.restart_at, record.stopped_until) == (
            decision.stop,
            decision.restart_at,
            decision.stopped_until,
        )
        assert len(record.crash_times) <= max_restarts + 1
        assert tuple(record.crash_times) == decision.crash_times[-(max_restarts + 1) :]
        for later in (now + 10, now + 29, now + 30, now + 31):
            expired = (
                not record.is_stopped(later)
                and later >= record.restart_at
                and all(later - t >= policy.period_s for t in history)
            )
            assert record.expired(policy.period_s, later) == expired


async def settle(clock: ManualClock, seconds: int) -> None:
    """Advance the clock a second at a time, letting the sweeper run after each."""
    for _ in range(seconds):
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()


@pytest.mark.anyio
@pytest.mark.parametrize("passivate_after_s", [None, 1000])
async def test_an_entity_no_longer_counts_as_stopped_once_its_cool_down_is_over(
    passivate_after_s: float | None,
) -> None:
    clock = ManualClock()
    policy = replace(POLICY, max_restarts=0, cooldown_s=10)
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal, clock=clock, restart_policy=policy, passivate_after_s=passivate_after_s
        ) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        assert rt.statistics().stopped_entities == 1
        await settle(clock, 9)
        assert rt.statistics().stopped_entities == 1
        await settle(clock, 1)
        assert rt.statistics().stopped_entities == 0  # no command needed to see it
        await settle(clock, 3600)
        assert rt.statistics().stopped_entities == 0
        if passivate_after_s is not None:
            assert "account-42" not in rt._supervised  # the sweeper forgot it
        assert (await rt.ask(account, "42", Deposit(1))).version == 2


@pytest.mark.anyio
@pytest.mark.parametrize("passivate_after_s", [None, 40])
async def test_a_restart_is_told_apart_from_a_fresh_activation_with_or_without_a_sweeper(
    passivate_after_s: float | None,
) -> None:
    # Whether the sweeper has pruned the crash table or not, an entity activated again while
    # the supervisor remembers its crash is restarted, and one activated after that is not.
    clock = ManualClock()
    kinds: list[str] = []
    policy = replace(POLICY, period_s=10, backoff_initial_s=0)
    async with (
        MemoryJournal() as journal,
        Runtime(
            journal,
            clock=clock,
            restart_policy=policy,
            passivate_after_s=passivate_after_s,
            on_lifecycle=lambda notice: kinds.append(notice.kind),
        ) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        await settle(clock, 5)
        await rt.ask(account, "42", Deposit(1))
        assert kinds == ["started", "crashed", "restarted"]
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        await settle(clock, 16)  # the crash is older than the period: forgotten
        await rt.ask(account, "42", Deposit(1))
        assert kinds == ["started", "crashed", "restarted", "crashed", "recovered"]
        assert (rt.statistics().crashes, rt.statistics().restarts) == (2, 1)


@pytest.mark.anyio
async def test_a_restart_stays_a_restart_when_the_sweeper_prunes_during_its_replay() -> None:
    clock = ManualClock()
    kinds: list[str] = []
    policy = replace(POLICY, max_restarts=0, cooldown_s=2)
    async with (
        GatedActivations() as journal,
        Runtime(
            journal,
            clock=clock,
            restart_policy=policy,
            passivate_after_s=4,
            on_lifecycle=lambda notice: kinds.append(notice.kind),
        ) as rt,
    ):
        await rt.ask(account, "42", Open("ada"))
        with pytest.raises(RuntimeError):
            await rt.ask(account, "42", Explode())
        await settle(clock, 2)  # the cool-down is over: the next command restarts the entity
        journal.gate = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.ask, account, "42", Deposit(1))
            await settle(clock, 2)  # sweeps while the restart replays
            journal.gate.set()
        assert kinds == ["started", "crashed", "stopped", "restarted"]
        assert rt.statistics().restarts == 1


@pytest.mark.anyio
async def test_an_entity_released_by_its_cool_down_counts_its_crashes_afresh() -> None:
    # Two crashes stop the entity (one restart allowed in the period); once the cool-down is
    # over it starts afresh: its next crash, still inside the period of the earlier two, is
    # its first, and it restarts.
    clock = ManualClock()
    kinds: list[str] = []
    policy = RestartPolicy(max_restarts=1, period_s=60, backoff_initial_s=0, cooldown_s=1)
    with anyio.fail_after(5):
        async with (
            MemoryJournal() as journal,
            Runtime(
                journal,
                clock=clock,
                restart_policy=policy,
                on_lifecycle=lambda notice: kinds.append(notice.kind),
            ) as rt,
        ):
            await rt.ask(account, "42", Open("ada"))
            for _ in range(2):
                with pytest.raises(RuntimeError, match="boom"):
                    await rt.ask(account, "42", Explode())
            with pytest.raises(EntityStopped, match="until its cool-down ends"):
                await rt.ask(account, "42", Deposit(1))
            clock.advance(1)
            with pytest.raises(RuntimeError, match="boom"):
                await rt.ask(account, "42", Explode())
            assert rt.statistics().stopped_entities == 0
            assert (await rt.ask(account, "42", Deposit(1))).version == 2
            assert (rt.statistics().crashes, rt.statistics().restarts) == (3, 3)
    assert kinds == [
        *("started", "crashed", "restarted", "crashed", "stopped"),
        *("restarted", "crashed", "restarted"),
    ]


class FailingActivations(MemoryJournal):
    """A MemoryJournal whose ``failing`` read ("stream_version" or "read_chunk") raises a
    JournalError, as a journal whose reads fail for a while does."""

    failing: str | None = None

    async def stream_version(self, stream_id: str) -> int:
        if self.failing == "stream_version":
            raise JournalError("the read failed")
        return await super().stream_version(stream_id)

    async def read_chunk(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> StreamChunk | None:
        if self.failing == "read_chunk":
            raise JournalError("the read failed")
        return await super().read_chunk(stream_id, from_version, to_version)


@pytest.mark.anyio
@pytest.mark.parametrize("failing", ["stream_version", "read_chunk"])
async def test_a_journal_error_during_activation_is_not_a_crash(failing: str) -> None:
    # The entity's code did nothing wrong: every caller gets the journal's error, as many
    # times as it happens, and the supervisor neither backs off nor stops the entity.
    clock = ManualClock(autojump=True)
    notices: list[LifecycleEvent] = []
    policy = replace(POLICY, max_restarts=1)
    with anyio.fail_after(5):
        async with (
            FailingActivations() as journal,
            Runtime(journal, clock=clock, restart_policy=policy, on_lifecycle=notices.append) as rt,
        ):
            opened = NewEvent("account.Opened/1", {"owner": "ada"})
            await journal.append("account-42", [opened], expected_version=0)
            journal.failing = failing
            for _ in range(4):
                with pytest.raises(JournalError, match="the read failed"):
                    await rt.ask(account, "42", Deposit(1))
            statistics = rt.statistics()
            assert (statistics.crashes, statistics.restarts, statistics.stopped_entities) == (
                0,
                0,
                0,
            )
            assert statistics.live_actors == 0
            assert notices == []
            assert clock.sleeps == []  # no restart backoff
            journal.failing = None
            assert (await rt.ask(account, "42", Deposit(1))).version == 2
    assert [notice.kind for notice in notices] == ["recovered"]


class Buffer:
    """What a crashing ``decide`` holds in its frame (a big buffer, say); weakly referable."""


buffers: list[weakref.ref[Buffer]] = []


@dataclass(frozen=True)
class Upload:
    size: int


@dataclass(frozen=True)
class Uploaded:
    size: int


def decide_upload(state: int, command: Upload) -> list[Uploaded]:
    buffer = Buffer()
    buffers.append(weakref.ref(buffer))
    raise ValueError(f"cannot parse {command.size} bytes")


uploads = Aggregate(
    "upload", 0, decide_upload, lambda state, event: state + 1, events={"Uploaded": Uploaded}
)


@pytest.mark.anyio
async def test_a_stopped_entity_keeps_its_last_failure_but_not_the_frames_it_went_through() -> None:
    buffers.clear()
    policy = RestartPolicy(max_restarts=0)
    async with MemoryJournal() as journal, Runtime(journal, restart_policy=policy) as runtime:
        with pytest.raises(ValueError, match="cannot parse 5 bytes") as crashed:
            await runtime.ask(uploads, "u", Upload(5))
        # The caller's exception is its own, left whole: its frames and their locals.
        frames = [frame for frame, _ in traceback.walk_tb(crashed.value.__traceback__)]
        assert "buffer" in frames[-1].f_locals
        del crashed, frames
        gc.collect()
        assert buffers[0]() is None  # The supervisor keeps no frame of the crash alive...
        with pytest.raises(
            EntityStopped, match=r"last failure: ValueError\('cannot parse 5"
        ) as stopped:
            await runtime.ask(uploads, "u", Upload(6))
        # ...yet its last failure says what happened and where.
        failure = stopped.value.last_failure
        assert type(failure) is ValueError
        assert failure.args == ("cannot parse 5 bytes",)
        assert failure.__traceback__ is None
        (note,) = failure.__notes__
        assert "in decide_upload" in note
        assert 'raise ValueError(f"cannot parse {command.size} bytes")' in note


class Refusing(Exception):
    """An exception whose class cannot be made again from its args."""

    def __new__(cls, code: int) -> Refusing:
        if not isinstance(code, int):
            raise TypeError("code must be an int")
        return super().__new__(cls, code)

    def __init__(self, code: int) -> None:
        super().__init__(f"failed with code {code}")
        self.code = code


def test_detached_copies_a_failure_without_touching_the_original() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as error:
            raise EntityStopped("s", error, 5.0) from error
    except EntityStopped as error:
        original = error
    original.add_note("noted by the caller")
    copy = detached(original)
    assert type(copy) is EntityStopped
    assert copy.args == original.args
    assert (copy.stream_id, copy.until_s) == ("s", 5.0)
    assert (copy.__traceback__, copy.__cause__, copy.__context__) == (None, None, None)
    (note,) = copy.__notes__
    assert "KeyError: 'inner'" in note  # The cause, in the formatted traceback.
    assert note.endswith("noted by the caller")
    assert original.__notes__ == ["noted by the caller"]  # Left as it was.
    assert original.__traceback__ is not None
    try:
        raise Refusing(3)
    except Refusing as error:
        refusing = error
    assert detached(refusing) is refusing  # Kept as it is: it cannot be made again.
    try:
        raise ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    except ExceptionGroup as error:
        group = error
    copied = detached(group)
    assert type(copied) is ExceptionGroup
    assert copied.message == "two"
    assert [type(member) for member in copied.exceptions] == [ValueError, KeyError]
    assert all(
        member is not original
        for member, original in zip(copied.exceptions, group.exceptions, strict=True)
    )
    assert [member.__traceback__ for member in copied.exceptions] == [None, None]
    assert "ValueError: a" in copied.__notes__[0]
