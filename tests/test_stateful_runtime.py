"""Model-based tests of the Runtime: random commands, reads, time, crashes and restarts.

A hypothesis state machine drives a Runtime over a MemoryJournal (and over a FileJournal
whose queue of appends is nearly always full) and a plain model side by side, on asyncio and
on trio. The model holds each stream's events, the supervisor's memory of crashes, the live
actors in least-recently-used order, the idle sweeper's ticks and the runtime's counters;
after every step the journal must hold exactly the model's events and ``statistics()`` must
agree with its counters. Time is a ManualClock that only the ``pass_time`` rule moves.

The machine's setup and invariants are in ``runtime_machine``, the model in ``runtime_model``.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from journals import (
    FileJournal,
    Journal,
    JournalFailed,
    MemoryJournal,
)
from journals.testing import FaultyFileIO
from runtime import (
    Aggregate,
    CommandResult,
    LifecycleEvent,
    MailboxTimeout,
    VersionNotReached,
)

from .examples import examples
from .runtime_machine import RuntimeMachineBase
from .runtime_model import (
    AGGREGATES,
    DECIDED,
    Add,
    AddTwice,
    Command,
    Crash,
    Event,
    Nothing,
    Refuse,
    Tally,
    attempt,
    commands,
    counter,
    entities,
    fold,
    outcome_of,
)


@dataclass(frozen=True)
class Read:
    """A ``state()`` read among concurrent asks."""


READ = Read()
CANCELLED = object()  # What a cancelled caller got: its own cancellation.


class RuntimeMachine(RuntimeMachineBase):
    @rule(entity=entities, command=commands)
    def ask(self, entity: tuple[str, str], command: Command) -> None:
        expected = self.expect(entity, command)
        aggregate = AGGREGATES[entity[0]]
        timeout = self.timeout_for(expected)
        got = self.call(self._ask, aggregate, entity[1], command, timeout)
        assert outcome_of(got) == expected, (command, got)
        self.m.refused(expected)

    async def _ask(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        command: Command,
        wait_s: float | None,
    ) -> Any:
        result = await attempt(self.runtime.ask(aggregate, entity_id, command, timeout_s=wait_s))
        await self.settle()
        return result

    @rule(entity=entities, command=commands)
    def tell(self, entity: tuple[str, str], command: Command) -> None:
        expected = self.expect(entity, command)
        aggregate = AGGREGATES[entity[0]]
        got = self.call(self._tell, aggregate, entity[1], command, self.timeout_for(expected))
        if expected[0] in ("stopped", "backoff"):
            assert outcome_of(got) == expected, (command, got)
            self.m.refused(expected)
        else:
            assert got is None, got

    async def _tell(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        command: Command,
        wait_s: float | None,
    ) -> Any:
        result = await attempt(self.runtime.tell(aggregate, entity_id, command, timeout_s=wait_s))
        await self.settle()
        return result

    @rule(entity=entities, command=commands)
    def tell_nowait(self, entity: tuple[str, str], command: Command) -> None:
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        if self.m.in_backoff(stream):
            return  # Its delivery would wait out the backoff on the manual clock.
        expected = self.expect(entity, command)
        if expected == ("stopped",):  # Refused at delivery.
            self.m.counts["outbox_undelivered"] += 1
            self.m.refused(expected)
        self.call(self._tell_nowait, AGGREGATES[name], entity_id, command)

    async def _tell_nowait(
        self, aggregate: Aggregate[Tally, Command, Event], entity_id: str, command: Command
    ) -> None:
        self.runtime.tell_nowait(aggregate, entity_id, command)
        await self.settle()

    @rule(entity=entities)
    def state(self, entity: tuple[str, str]) -> None:
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        admitted = self.m.admit(name, stream)
        timeout = self.timeout_for((admitted,))
        got = self.call(self._state, AGGREGATES[name], entity_id, timeout)
        if admitted == "ok":
            assert got == fold(self.m.events.get(stream, [])), got
        else:
            assert outcome_of(got) == (admitted,), got
            self.m.refused((admitted,))

    async def _state(
        self, aggregate: Aggregate[Tally, Command, Event], entity_id: str, wait_s: float | None
    ) -> Any:
        result = await attempt(self.runtime.state(aggregate, entity_id, timeout_s=wait_s))
        await self.settle()
        return result

    @rule(entity=entities, drawn=st.integers(0, 30))
    def state_at(self, entity: tuple[str, str], drawn: int) -> None:
        name, entity_id = entity
        events = self.m.events.get(f"{name}-{entity_id}", [])
        # Drawn whatever the model holds (on trio the order of concurrent asks, and so the
        # events, may differ from run to run); mostly at or just beyond the durable version.
        version = drawn % (len(events) + 2)
        got = self.call(self._state_at, AGGREGATES[name], entity_id, version)
        if version > len(events):
            assert isinstance(got, VersionNotReached), got
        else:
            assert got == fold(events[:version]), (version, got)
        # A moment taken after every command returned covers them all.
        moment = datetime.now(UTC)
        got = self.call(self._state_at, AGGREGATES[name], entity_id, None, moment)
        assert got == fold(events), (moment, got)

    async def _state_at(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        version: int | None,
        at: datetime | None = None,
    ) -> Any:
        return await attempt(self.runtime.state_at(aggregate, entity_id, version=version, at=at))

    @rule(entity=entities, calls=st.lists(commands | st.just(READ), min_size=2, max_size=6))
    def concurrent_asks(self, entity: tuple[str, str], calls: list[Command | Read]) -> None:
        """Asks to one entity at once: each is decided against the ones decided before it,
        and their answers come back with versions in the order they were decided. A crash
        among them (when restarts take no backoff) fails it alone; the later ones wait for
        the restart, or are refused once the entity is stopped."""
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        if self.m.config.backoff_s:  # The restart would wait for the manual clock.
            calls = [Nothing() if isinstance(call, Crash) else call for call in calls]
        if any(isinstance(call, Crash | Refuse) for call in calls):
            # A read would activate the entity again, at a moment the model cannot tell.
            calls = [call for call in calls if not isinstance(call, Read)]
        if self.m.admit(name, stream) != "ok":
            return  # (admit's model is only read here when the entity is not live)
        before = list(self.m.events.setdefault(stream, []))
        calls = [copy.copy(call) for call in calls]  # told apart by identity
        decided, answered = self.call(self._concurrent, AGGREGATES[name], entity_id, calls)
        results = {id(call): result for call, result in answered}
        versions = []
        for index, command in enumerate(decided):
            if index and self.m.admit(name, stream) != "ok":  # again after a crash or refusal
                raise AssertionError(f"{command} was decided for a stopped entity")
            expected = self.m.decide(name, stream, command)
            got = outcome_of(results.pop(id(command)))
            assert got == expected, (decided, answered)
            if expected[0] == "ok":
                versions.append(expected[1])
        assert versions == sorted(versions)
        events = self.m.events[stream]
        for call in calls:
            if id(call) not in results:
                continue
            result = results.pop(id(call))
            if isinstance(call, Read):  # A state the entity had, with what was durable before.
                assert result in [fold(events[:n]) for n in range(len(before), len(events) + 1)]
            else:  # Never decided: refused once the entity was stopped.
                assert self.m.admit(name, stream) == "stopped", (call, result)
                assert outcome_of(result) == ("stopped",), (call, result)
                self.m.refused(("stopped",))
        if self.backend == "asyncio":
            # Answers come back in the order of their versions (on trio, tasks woken at once
            # run in an order trio picks).
            in_order = [r.version for _, r in answered if isinstance(r, CommandResult)]
            assert in_order == sorted(in_order), answered

    async def _concurrent(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        calls: list[Command | Read],
    ) -> tuple[list[Command], list[tuple[Command | Read, Any]]]:
        DECIDED.clear()
        answered: list[tuple[Command | Read, Any]] = []

        async def one(call: Command | Read) -> None:
            if isinstance(call, Read):
                answered.append((call, await attempt(self.runtime.state(aggregate, entity_id))))
            else:
                answered.append((call, await attempt(self.runtime.ask(aggregate, entity_id, call))))

        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(one, call)
        await self.settle()
        return list(DECIDED), answered

    @rule(
        entity_id=st.sampled_from(["a", "b", "c"]),
        calls=st.lists(
            st.tuples(commands, st.sampled_from(["wait", "cancel", "no wait"])),
            min_size=1,
            max_size=6,
        ),
        checkpoints=st.integers(0, 6),
    )
    def cancelled_asks(
        self, entity_id: str, calls: list[tuple[Command, str]], checkpoints: int
    ) -> None:
        """Asks to one live entity at once, some of whose callers are cancelled and some of
        which do not wait (``timeout_s=0``): each cancelled caller gets its cancellation, no
        other caller does, and an append placed before its caller went away lands all the
        same; a caller that timed out was not decided. (A counter's snapshots do not depend
        on which commands were answered, so the model knows them.)"""
        stream = f"counter-{entity_id}"
        if stream not in self.m.live:
            return  # An activation its callers all leave would not be counted.
        if not isinstance(self.journal, MemoryJournal):
            self.cancelled_while_waiting_for_room(entity_id, calls, checkpoints)
            return
        if self.m.config.backoff_s:  # A restart would wait for the manual clock.
            calls = [(Nothing() if isinstance(c, Crash) else c, mode) for c, mode in calls]
        self.m.admit("counter", stream)
        commands = [copy.copy(command) for command, _ in calls]  # told apart by identity
        modes = {id(c): mode for c, (_, mode) in zip(commands, calls, strict=True)}
        decided, answered = self.call(self._cancelled, entity_id, commands, modes, checkpoints)
        results = {id(command): result for command, result in answered}
        for index, command in enumerate(decided):
            if index and self.m.admit("counter", stream) != "ok":
                raise AssertionError(f"{command} was decided for a stopped entity")
            expected = self.m.decide("counter", stream, command)
            got = results.pop(id(command))
            if got is CANCELLED:
                assert modes[id(command)] == "cancel"
                assert expected[0] in ("ok", "rejected"), (command, expected)
                if expected[0] == "ok":
                    self.m.counts["commands"] -= 1  # Its events land, unanswered.
            else:
                assert outcome_of(got) == expected, (decided, answered)
        for command, result in ((c, results[id(c)]) for c in commands if id(c) in results):
            if result is CANCELLED:
                assert modes[id(command)] == "cancel"
            elif isinstance(result, MailboxTimeout):
                assert modes[id(command)] == "no wait", (command, result)
                self.m.refused(outcome_of(result))
            else:  # Never decided: refused once the entity was stopped.
                assert self.m.admit("counter", stream) == "stopped", (command, result)
                assert outcome_of(result) == ("stopped",), (command, result)
                self.m.refused(("stopped",))

    def cancelled_while_waiting_for_room(
        self, entity_id: str, calls: list[tuple[Command, str]], checkpoints: int
    ) -> None:
        """On a journal whose queue of appends is full, a caller cancelled while its append
        waits for room takes it back (nothing is written, the actor is rebuilt), and one
        cancelled later leaves it to land: which one happened depends on timing, so the
        model takes the events from the journal, after checking that every answered command
        is there as answered and the entity's state is their fold."""
        stream = f"counter-{entity_id}"
        if self.m.config.max_live_actors is not None:
            return  # The rebuilds would evict other actors at moments the model cannot tell.
        # No crash: the model would not know the supervisor's records.
        calls = [(Nothing() if isinstance(c, Crash) else c, mode) for c, mode in calls]
        commands = [copy.copy(command) for command, _ in calls]  # told apart by identity
        modes = {id(c): mode for c, (_, mode) in zip(commands, calls, strict=True)}
        decided, answered = self.call(self._cancelled, entity_id, commands, modes, checkpoints)
        state = self.call(self._state, counter, entity_id, None)
        events = self.call(self._stored).get(stream, ([], []))[1]
        assert state == fold(events), (state, events, answered)
        for command, result in answered:
            if isinstance(result, MailboxTimeout) or result is CANCELLED:
                assert modes[id(command)] == ("cancel" if result is CANCELLED else "no wait")
                assert result is CANCELLED or all(c is not command for c in decided)
            elif isinstance(result, CommandResult):
                amounts = [event.amount for event in result.events]
                first = result.version - len(amounts)
                assert events[first : result.version] == amounts, (command, result, events)
            else:
                assert isinstance(command, Add | AddTwice | Refuse), (command, result)
                assert outcome_of(result)[0] in ("rejected", "refused"), (command, result)
        self.m.events[stream] = events
        self.m.admit("counter", stream)
        statistics = self.runtime.statistics()
        self.m.counts = {name: getattr(statistics, name) for name in self.m.counts}

    async def _cancelled(
        self, entity_id: str, commands: list[Command], modes: dict[int, str], checkpoints: int
    ) -> tuple[list[Command], list[tuple[Command, Any]]]:
        DECIDED.clear()
        answered: list[tuple[Command, Any]] = []
        scopes = {id(command): anyio.CancelScope() for command in commands}

        async def one(command: Command) -> None:
            wait_s = 0 if modes[id(command)] == "no wait" else None
            with scopes[id(command)] as scope:
                result = await attempt(
                    self.runtime.ask(counter, entity_id, command, timeout_s=wait_s)
                )
            answered.append((command, CANCELLED if scope.cancelled_caught else result))

        async with anyio.create_task_group() as group:
            for command in commands:
                group.start_soon(one, command)
            for _ in range(checkpoints):
                await anyio.lowlevel.checkpoint()
            if checkpoints > 4:  # Later: a FileJournal's appends are in its worker thread.
                await anyio.sleep(0.001)
            for command in commands:
                if modes[id(command)] == "cancel":
                    scopes[id(command)].cancel()
        await self.settle()
        return list(DECIDED), answered

    @rule(
        sends=st.lists(st.tuples(entities, commands), min_size=2, max_size=8), close=st.booleans()
    )
    def tell_nowait_burst(self, sends: list[tuple[tuple[str, str], Command]], close: bool) -> None:
        """Commands to several entities queued at once: the outbox delivers them in order,
        each told command runs in its own task, so several actors are busy at once and
        ``max_live_actors`` evicts each one beyond it as it goes idle. Which ones it evicts
        depends on timing: the model follows the lifecycle notices, and checks the rest.
        With ``close``, the runtime is left at once: it delivers and runs them all first."""
        if self.m.config.backoff_s:  # A restart would hold the outbox on the manual clock.
            sends = [(entity, Nothing() if isinstance(c, Crash) else c) for entity, c in sends]
        if any(self.m.in_backoff(f"{name}-{entity_id}") for (name, entity_id), _ in sends):
            return  # Its delivery would wait out the backoff on the manual clock.
        sends = [(entity, copy.copy(command)) for entity, command in sends]
        DECIDED.clear()
        self.notices = DECIDED
        try:
            self.call(self._burst, sends, close)
            if close:
                self.stop_runtime()
        finally:
            self.notices = None
        trace = list(DECIDED)
        pending = list(sends)
        for item in trace:
            if isinstance(item, LifecycleEvent):
                self.m.follow(item)
                continue
            while pending and pending[0][1] is not item:  # refused at delivery
                (name, entity_id), command = pending.pop(0)
                assert self.m.admit(name, f"{name}-{entity_id}") == "stopped", (command, trace)
                self.m.counts["outbox_undelivered"] += 1
                self.m.refused(("stopped",))
            assert pending, (item, trace)
            (name, entity_id), command = pending.pop(0)
            stream = f"{name}-{entity_id}"
            assert stream in self.m.live, (command, trace)
            self.m.admit(name, stream)
            self.m.decide(name, stream, command)
        for (name, entity_id), command in pending:
            assert self.m.admit(name, f"{name}-{entity_id}") == "stopped", (command, trace)
            self.m.counts["outbox_undelivered"] += 1
            self.m.refused(("stopped",))
        bound = self.m.config.max_live_actors
        assert bound is None or len(self.m.live) <= bound, (self.m.live, trace)
        if close:
            self.m.live.clear()  # The exit leaves no actor live; the counters stay.
            self.statistics_agree()
            self.start_runtime(self.m.config)

    async def _burst(self, sends: list[tuple[tuple[str, str], Command]], close: bool) -> None:
        for (name, entity_id), command in sends:
            self.runtime.tell_nowait(AGGREGATES[name], entity_id, command)
        if not close:
            await self.settle()

    @rule(
        entity=entities,
        commands=st.lists(st.builds(Add, st.integers(1, 3)) | st.just(Nothing()), max_size=5),
        checkpoints=st.integers(0, 3),
    )
    def journal_fails(
        self, entity: tuple[str, str], commands: list[Command], checkpoints: int
    ) -> None:
        """The journal fails (a failed fsync, a full disk) while commands to one entity are in
        flight: what was acknowledged is in it, what failed is not, and the actor answers
        from what is durable. The journal is then reopened (a MemoryJournal's events go to
        a new one): it holds the acknowledged prefix, and possibly whole appends whose
        answer was the failure."""
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        if self.m.admit(name, stream) != "ok":
            return
        before = self.m.events.setdefault(stream, [])
        counts = self.runtime.statistics()
        commands = [copy.copy(command) for command in commands]
        answered, state, probe = self.call(
            self._fail_during, AGGREGATES[name], entity_id, commands, checkpoints
        )
        stored = self.call(self._stored).get(stream, ([], []))
        assert stored[0] == list(range(1, len(stored[0]) + 1))
        assert stored[1][: len(before)] == before
        acknowledged = sorted(
            (result.version, command.amount)
            for command, result in answered
            if isinstance(command, Add) and not isinstance(result, Exception)
        )
        assert [amount for _, amount in acknowledged] == stored[1][len(before) :], answered
        assert [version for version, _ in acknowledged] == list(
            range(len(before) + 1, len(stored[1]) + 1)
        )
        failed = [c for c, r in answered if isinstance(r, Exception)]
        assert all(isinstance(r, JournalFailed) for _, r in answered if isinstance(r, Exception))
        assert state == fold(stored[1])
        assert isinstance(probe, JournalFailed), probe
        statistics = self.runtime.statistics()
        assert statistics.commands - counts.commands == len(answered) - len(failed)
        failed_adds = sum(1 for command in failed if isinstance(command, Add))
        assert statistics.append_failures - counts.append_failures == failed_adds + 1
        self.m.events[stream] = stored[1]
        self.stop_runtime()
        self.recover()
        for other, (_, events) in self.call(self._stored).items():
            acknowledged_events = self.m.events.get(other, [])
            assert events[: len(acknowledged_events)] == acknowledged_events, (other, events)
            self.m.events[other] = events
        # Snapshots taken meanwhile (as due, or as others were evicted) may be lost with the
        # journal: the invariant checks that those it holds are past states of their entity.
        self.m.snapshots.clear()
        for snapshot in self.call(self._contents)[1]:
            self.m.snapshots[snapshot.stream_id] = snapshot.version
        self.start_runtime(self.m.config)

    async def _fail_during(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        commands: list[Command],
        checkpoints: int,
    ) -> tuple[list[tuple[Command, Any]], Any, Any]:
        answered: list[tuple[Command, Any]] = []

        async def one(command: Command) -> None:
            result = await attempt(self.runtime.ask(aggregate, entity_id, command))
            answered.append((command, result))

        async with anyio.create_task_group() as group:
            for command in commands:
                group.start_soon(one, command)
            for _ in range(checkpoints):
                await anyio.lowlevel.checkpoint()
            self.fail_journal()
        await self.settle()
        state = await self.runtime.state(aggregate, entity_id)
        probe = await attempt(self.runtime.ask(aggregate, entity_id, Add(1)))
        await self.settle()
        return answered, state, probe

    @rule(entity=entities, command=commands, by_reset=st.booleans())
    def ask_through_backoff(
        self, entity: tuple[str, str], command: Command, by_reset: bool
    ) -> None:
        """An ask to an entity in its restart backoff waits it out, or goes on at once when
        the entity is reset meanwhile."""
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        if not self.m.in_backoff(stream) or (not by_reset and self.m.config.passivate):
            return  # (the sweeper would wake at the same moment: an order the model cannot tell)
        wait_s = None if by_reset else self.m.records[stream].restart_at - self.m.now
        got = self.call(self._through_backoff, AGGREGATES[name], entity_id, command, wait_s)
        if wait_s is None:
            del self.m.records[stream]
        else:
            self.m.now += wait_s
        expected = self.expect(entity, command)
        assert outcome_of(got) == expected, (command, got)
        self.m.refused(expected)

    async def _through_backoff(
        self,
        aggregate: Aggregate[Tally, Command, Event],
        entity_id: str,
        command: Command,
        wait_s: float | None,
    ) -> Any:
        answered: list[Any] = []

        async def one() -> None:
            answered.append(await attempt(self.runtime.ask(aggregate, entity_id, command)))

        sleepers = self.clock.sleepers
        async with anyio.create_task_group() as group:
            group.start_soon(one)
            for _ in range(1000):  # until it sleeps out the backoff
                if self.clock.sleepers > sleepers:
                    break
                await anyio.lowlevel.checkpoint()
            else:
                raise AssertionError("the ask did not wait out the backoff")
            if wait_s is None:
                self.runtime.reset(aggregate, entity_id)
            else:
                self.clock.advance(wait_s)
        await self.settle()
        return answered[0]


class RuntimeTrioMachine(RuntimeMachine):
    backend = "trio"


class RuntimeFileMachine(RuntimeMachine):
    """The same on a FileJournal whose queue holds about one append: appends often wait for
    room (``queue_append_columns``), and the actor decides nothing meanwhile."""

    def open_journal(self) -> Journal:
        self._directory = tempfile.TemporaryDirectory(prefix="stateful-runtime-")
        self._exit.callback(self._directory.cleanup)
        return self.file_journal()

    def file_journal(self) -> FileJournal:
        self.faults = FaultyFileIO()
        path = Path(self._directory.name) / "journal"
        return FileJournal(
            path, durable=False, batch_bytes_max=128, queue_bytes_max=128, file_io=self.faults
        )

    def fail_journal(self) -> None:
        self.faults.enospc_after_bytes = self.faults.bytes_written  # the disk is full

    def recover(self) -> None:
        self._journal_context.close()
        self.journal = self.file_journal()
        self._journal_context = contextlib.ExitStack()
        self._journal_context.enter_context(self.portal.wrap_async_context_manager(self.journal))


class RuntimeFileTrioMachine(RuntimeFileMachine):
    backend = "trio"


_settings = settings(
    max_examples=examples(15),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
RuntimeMachine.TestCase.settings = _settings
RuntimeTrioMachine.TestCase.settings = settings(_settings, max_examples=examples(8))
TestRuntimeStateful = RuntimeMachine.TestCase
TestRuntimeStatefulTrio = RuntimeTrioMachine.TestCase
RuntimeFileMachine.TestCase.settings = settings(_settings, max_examples=examples(8))
TestRuntimeStatefulFile = RuntimeFileMachine.TestCase
RuntimeFileTrioMachine.TestCase.settings = settings(_settings, max_examples=examples(5))
TestRuntimeStatefulFileTrio = RuntimeFileTrioMachine.TestCase
