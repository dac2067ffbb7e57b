"""The machinery of the Runtime's state machine (test_stateful_runtime): a Runtime over a
journal in a blocking portal (an event loop in a helper thread, entered with
``wrap_async_context_manager`` as in ``test_stateful_journal``), a ManualClock that only the
``pass_time`` rule moves, the rules on time, resets and reopening, and the invariants checked
after every step: the journal holds exactly the model's events with gapless versions, every
snapshot is a past state of its entity, and ``statistics()`` agrees with the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from journals import (
    Journal,
    MemoryJournal,
    NewEvent,
    RecordedEvent,
    Snapshot,
)
from runtime import (
    LifecycleEvent,
    RestartPolicy,
    Runtime,
)
from runtime.testing import ManualClock

from .runtime_model import (
    AGGREGATES,
    COUNTERS,
    ENTITIES,
    IDLE_S,
    MAX_RESTARTS,
    PERIOD_S,
    Command,
    Config,
    Model,
    configs,
    entities,
    fold,
)

T = TypeVar("T")


class RuntimeMachineBase(RuleBasedStateMachine):
    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._exit = contextlib.ExitStack()
        self.portal = self._exit.enter_context(
            anyio.from_thread.start_blocking_portal(self.backend)
        )
        self.clock = ManualClock()
        self.journal = self.open_journal()
        self._journal_context = contextlib.ExitStack()
        self._journal_context.enter_context(self.portal.wrap_async_context_manager(self.journal))
        self._runtime_context: contextlib.ExitStack | None = None
        self.model: Model | None = None
        self.notices: list[Any] | None = None  # Where lifecycle notices go, when anywhere.

    def open_journal(self) -> Journal:
        return MemoryJournal()

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(function, *args)

    def teardown(self) -> None:
        try:
            if self._runtime_context is not None:
                self._runtime_context.close()
            self._journal_context.close()
        finally:
            self._exit.close()

    def start_runtime(self, config: Config) -> None:
        self.runtime = Runtime(
            self.journal,
            on_lifecycle=self.observe,
            clock=self.clock,
            max_live_actors=config.max_live_actors,
            mailbox_bound=config.mailbox_bound,
            passivate_after_s=IDLE_S if config.passivate else None,
            snapshot_on_passivation=config.snapshot_on_passivation,
            restart_policy=RestartPolicy(
                max_restarts=MAX_RESTARTS,
                period_s=PERIOD_S,
                backoff_initial_s=config.backoff_s,
                backoff_multiplier=2,
                backoff_max_s=2 * config.backoff_s,
                cooldown_s=config.cooldown_s,
            ),
        )
        self._runtime_context = contextlib.ExitStack()
        self._runtime_context.enter_context(self.portal.wrap_async_context_manager(self.runtime))
        old = self.model
        now = self.clock.now()
        self.model = Model(
            config,
            now,
            events={} if old is None else old.events,
            snapshots={} if old is None else old.snapshots,
            next_sweep=now + IDLE_S / 4,
        )

    def observe(self, notice: LifecycleEvent) -> None:
        if self.notices is not None:
            self.notices.append(notice)
        if notice.kind == "crashed" and self.m.config.reset_on_crash:
            # As an observer may: the entity is released at once, even from a stop.
            name, entity_id = notice.stream_id.split("-", 1)
            self.runtime.reset(AGGREGATES[name], entity_id)

    def stop_runtime(self) -> None:
        assert self._runtime_context is not None
        self._runtime_context.close()
        self._runtime_context = None

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    async def settle(self) -> None:
        """Let told commands, the outbox and the snapshot writer finish their work."""
        runtime = self.runtime
        for attempt_number in range(10_000):
            statistics = runtime.statistics()
            if (
                statistics.commands_in_flight == 0
                and statistics.outbox_depth == 0
                and not runtime._snapshots_queued  # each tried by the writer
            ):
                return
            if attempt_number < 100:
                await anyio.lowlevel.checkpoint()
            else:  # A FileJournal writes in a worker thread.
                await anyio.sleep(0.001)
        raise AssertionError(f"the runtime did not settle: {statistics}")

    @initialize(config=configs)
    def start(self, config: Config) -> None:
        self.start_runtime(config)

    def expect(self, entity: tuple[str, str], command: Command) -> tuple[Any, ...]:
        name, entity_id = entity
        stream = f"{name}-{entity_id}"
        admitted = self.m.admit(name, stream)
        if admitted != "ok":
            return (admitted,)
        return self.m.decide(name, stream, command)

    @staticmethod
    def timeout_for(expected: tuple[Any, ...]) -> float | None:
        # An entity in its restart backoff would wait for the manual clock: no wait at all.
        return 0 if expected == ("backoff",) else None

    def fail_journal(self) -> None:
        """Fail the journal as a failed fsync fails it: its pending and later appends fail."""
        assert isinstance(self.journal, MemoryJournal)
        self.journal.fail(OSError("injected failure"))

    def recover(self) -> None:
        """Replace the failed journal by a new one holding its events and latest snapshots
        (a MemoryJournal cannot be reopened; a FileJournal is, on the same path)."""
        events, snapshots = self.call(self._contents)
        self._journal_context.close()
        self.journal = MemoryJournal()
        self._journal_context = contextlib.ExitStack()
        self._journal_context.enter_context(self.portal.wrap_async_context_manager(self.journal))
        self.call(self._restore, events, snapshots)

    async def _contents(self) -> tuple[list[RecordedEvent], list[Snapshot]]:
        events = [event async for event in self.journal.read_all(1)]
        snapshots = []
        for name, entity_id in ENTITIES:
            snapshot = await self.journal.load_snapshot(f"{name}-{entity_id}")
            if snapshot is not None:
                snapshots.append(snapshot)
        return events, snapshots

    async def _restore(self, events: list[RecordedEvent], snapshots: list[Snapshot]) -> None:
        for event in events:
            new = NewEvent(event.type, event.data, event.metadata)
            await self.journal.append(event.stream_id, [new], expected_version=event.version - 1)
        for snapshot in snapshots:
            await self.journal.save_snapshot(
                snapshot.stream_id, snapshot.version, snapshot.data, snapshot.metadata
            )

    @rule(seconds=st.sampled_from([1, 2, 3, 5, 11]))
    def pass_time(self, seconds: int) -> None:
        self.call(self.clock.pass_time, seconds)
        self.call(self.settle)
        self.m.pass_time(seconds)

    @rule(entity=entities)
    def reset(self, entity: tuple[str, str]) -> None:
        name, entity_id = entity
        self.runtime.reset(AGGREGATES[name], entity_id)
        self.m.records.pop(f"{name}-{entity_id}", None)

    @rule(config=configs)
    def reopen(self, config: Config) -> None:
        """A new Runtime over the same journal: what was durable is all it finds."""
        self.stop_runtime()
        self.start_runtime(config)

    @invariant()
    def journal_holds_the_model(self) -> None:
        if self.model is None:
            return
        stored = self.call(self._stored)
        for stream, events in self.m.events.items():
            versions, amounts = stored.get(stream, ([], []))
            assert versions == list(range(1, len(events) + 1)), (stream, versions)
            assert amounts == events, (stream, amounts, events)
        assert set(stored) <= set(self.m.events), stored

    async def _stored(self) -> dict[str, tuple[list[int], list[int]]]:
        stored: dict[str, tuple[list[int], list[int]]] = {}
        async for event in self.journal.read_all(1):
            versions, amounts = stored.setdefault(event.stream_id, ([], []))
            assert event.type.split(".")[1].startswith("Added/"), event
            versions.append(event.version)
            amounts.append(event.data["amount"])
        return stored

    @invariant()
    def snapshots_hold_past_states(self) -> None:
        if self.model is None:
            return
        for name, entity_id in ENTITIES:
            stream = f"{name}-{entity_id}"
            snapshot = self.call(self.journal.load_snapshot, stream, None)
            expected = self.m.snapshots.get(stream)
            if expected is None:
                assert snapshot is None, snapshot
                continue
            assert snapshot is not None, stream
            assert snapshot.version == expected, (stream, snapshot)
            state = AGGREGATES[name].decode_state(snapshot.data)
            assert state == fold(self.m.events[stream][:expected]), (stream, snapshot)

    @invariant()
    def statistics_agree(self) -> None:
        if self.model is None:
            return
        statistics = self.runtime.statistics()
        got = {name: getattr(statistics, name) for name in COUNTERS}
        assert got == self.m.counts
        assert statistics.live_actors == len(self.m.live)
        assert statistics.stopped_entities == self.m.stopped_entities()
        assert statistics.snapshots_skipped == 0
        assert statistics.commands_in_flight == 0
        # Every caller held before its command ran has gone on, timed out or been cancelled.
        assert statistics.callers_waiting_for_restart == 0
        assert statistics.callers_waiting_for_journal == 0
        assert statistics.appends_waiting_for_journal == 0  # Each placed or taken back.
