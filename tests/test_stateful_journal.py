"""Model-based tests of the journal contract: random appends, reads, snapshots and conflicts.

A hypothesis state machine drives a real journal and a plain in-memory model side by side and
compares them after every step. The machine is backend-neutral: a subclass says how to open the
journal; durable backends add rules that close and reopen it and that tear its tail.

The journal lives inside a blocking portal (an event loop in a helper thread), entered with
``wrap_async_context_manager`` so its task groups are entered and left by one task.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from journals import (
    AppendResult,
    ConcurrencyError,
    FileJournal,
    Journal,
    MemoryJournal,
    NewEvent,
    RecordedEvent,
    StartedAppend,
    verify_journal,
)

from .examples import examples
from .journal_files import without_clean_close

T = TypeVar("T")
SEGMENT_BYTES_MAX = 4096

STREAM_IDS = ["account-1", "account-2", "ünïcode-3", "流-4", "x"]
# Most steps hit two streams, so streams grow long enough for ranges and snapshots to matter.
stream_ids = st.sampled_from(STREAM_IDS[:2]) | st.sampled_from(STREAM_IDS)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
metadata_values = st.dictionaries(st.text(min_size=1, max_size=6), json_scalars, max_size=2)
new_events = st.builds(
    NewEvent,
    type=st.sampled_from(["Opened", "Deposited", "Tagged-é"]),
    data=json_values,
    metadata=metadata_values,
)
event_lists = st.lists(new_events, min_size=1, max_size=4)
# How an append states its expectation: the right version, no check, or a wrong version.
expectations = st.sampled_from(["right", "none", "stale", "ahead"])


@dataclass
class ModelEvent:
    stream_id: str
    version: int
    position: int
    type: str
    data: Any
    metadata: dict[str, Any]


@dataclass
class JournalModel:
    """What the journal must hold: the global log, per-stream positions and snapshots."""

    log: list[ModelEvent] = field(default_factory=list)
    streams: dict[str, list[int]] = field(default_factory=dict)
    # stream id -> list of (version, data, metadata), in the order they were saved.
    snapshots: dict[str, list[tuple[int, Any, dict[str, Any]]]] = field(default_factory=dict)
    # Every append as (first position, last position), to check that a cut keeps whole appends.
    appends: list[tuple[int, int]] = field(default_factory=list)

    def version(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, ()))

    def apply(self, stream_id: str, events: list[NewEvent]) -> AppendResult:
        first = len(self.log) + 1
        positions = self.streams.setdefault(stream_id, [])
        for event in events:
            self.log.append(
                ModelEvent(
                    stream_id,
                    len(positions) + 1,
                    len(self.log) + 1,
                    event.type,
                    event.data,
                    dict(event.metadata),
                )
            )
            positions.append(len(self.log))
        self.appends.append((first, len(self.log)))
        return AppendResult(version=len(positions), position=len(self.log))

    def truncate(self, head: int) -> None:
        """Keep the first ``head`` events, as recovery after a torn tail does."""
        del self.log[head:]
        self.appends = [a for a in self.appends if a[1] <= head]
        for stream_id, positions in list(self.streams.items()):
            kept = [p for p in positions if p <= head]
            if kept:
                self.streams[stream_id] = kept
            else:
                del self.streams[stream_id]

    def expected_for(self, stream_id: str, mode: str) -> int | None:
        version = self.version(stream_id)
        return {"right": version, "none": None, "stale": version - 1, "ahead": version + 1}[mode]


def as_model(event: RecordedEvent) -> ModelEvent:
    return ModelEvent(
        event.stream_id,
        event.version,
        event.position,
        event.type,
        event.data,
        dict(event.metadata),
    )


async def collect(iterator: Any) -> list[RecordedEvent]:
    return [event async for event in iterator]


class JournalMachine(RuleBasedStateMachine):
    """The journal contract as a state machine; subclasses provide ``open_journal``."""

    backend = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.model = JournalModel()
        self._exit = contextlib.ExitStack()
        self.portal = self._exit.enter_context(
            anyio.from_thread.start_blocking_portal(self.backend)
        )
        self.journal = self._enter(self.open_journal())

    def open_journal(self) -> Journal:
        raise NotImplementedError

    def _enter(self, journal: Journal) -> Journal:
        self._journal_context = contextlib.ExitStack()
        self._journal_context.enter_context(self.portal.wrap_async_context_manager(journal))
        return journal

    def close_journal(self) -> None:
        self._journal_context.close()

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self.portal.call(function, *args)

    def teardown(self) -> None:
        try:
            self.close_journal()
        finally:
            self._exit.close()

    # -- writing -----------------------------------------------------------------------------

    @rule(stream_id=stream_ids, events=event_lists, mode=expectations)
    def append(self, stream_id: str, events: list[NewEvent], mode: str) -> None:
        expected = self.model.expected_for(stream_id, mode)
        if expected is not None and expected < 0:
            with pytest.raises(ValueError, match="expected_version"):
                self.call(self._append, stream_id, events, expected)
            return
        if expected is not None and expected != self.model.version(stream_id):
            with pytest.raises(ConcurrencyError) as raised:
                self.call(self._append, stream_id, events, expected)
            assert raised.value.actual_version == self.model.version(stream_id)
            assert raised.value.expected_version == expected
            return
        result = self.call(self._append, stream_id, events, expected)
        assert result == self.model.apply(stream_id, events)

    async def _append(
        self, stream_id: str, events: list[NewEvent], expected: int | None
    ) -> AppendResult:
        return await self.journal.append(stream_id, events, expected_version=expected)

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(STREAM_IDS[:2]), event_lists, expectations),
            min_size=2,
            max_size=5,
        )
    )
    def concurrent_appends(self, batch: list[tuple[str, list[NewEvent], str]]) -> None:
        """Appends racing in one group commit; the outcome must be some serial order."""
        requests = [
            (stream_id, events, self.model.expected_for(stream_id, mode))
            for stream_id, events, mode in batch
            if mode != "stale" or self.model.version(stream_id) > 0
        ]
        outcomes = self.call(self._race, requests)
        self.check_serial(requests, outcomes)

    async def _race(
        self, requests: list[tuple[str, list[NewEvent], int | None]]
    ) -> list[AppendResult | ConcurrencyError]:
        outcomes: list[AppendResult | ConcurrencyError] = [
            ConcurrencyError("?", -1, -1) for _ in requests
        ]

        async def one(index: int) -> None:
            stream_id, events, expected = requests[index]
            try:
                outcomes[index] = await self.journal.append(
                    stream_id, events, expected_version=expected
                )
            except ConcurrencyError as error:
                outcomes[index] = error

        async with anyio.create_task_group() as group:
            for index in range(len(requests)):
                group.start_soon(one, index)
        return outcomes

    @rule(batch=st.lists(st.tuples(stream_ids, event_lists, st.booleans()), min_size=1, max_size=6))
    def pipelined_appends(self, batch: list[tuple[str, list[NewEvent], bool]]) -> None:
        """Appends placed one after another before any is durable (``start_append``), each
        expecting the version the ones before it leave, as the actor runtime pipelines."""
        results = self.call(self._pipeline, batch)
        for (stream_id, events, _), result in zip(batch, results, strict=True):
            assert result == self.model.apply(stream_id, events)

    async def _pipeline(self, batch: list[tuple[str, list[NewEvent], bool]]) -> list[AppendResult]:
        placed: dict[str, int] = {}
        pending: list[AppendResult | StartedAppend] = []
        for stream_id, events, checked in batch:
            version = placed.get(stream_id, self.model.version(stream_id))
            expected = version if checked else None
            started = self.journal.start_append(stream_id, events, expected_version=expected)
            if started is None:  # No such path (or no room): the plain append, in order.
                pending.append(
                    await self.journal.append(stream_id, events, expected_version=expected)
                )
            else:
                pending.append(started)
            placed[stream_id] = version + len(events)
        results = []
        for item in pending:
            if isinstance(item, AppendResult):
                results.append(item)
                continue
            durable, outcome, version, position = item
            await durable
            outcome.raise_error()
            results.append(AppendResult(version, position))
        return results

    def check_serial(
        self,
        requests: list[tuple[str, list[NewEvent], int | None]],
        outcomes: list[AppendResult | ConcurrencyError],
    ) -> None:
        won = sorted(
            (outcome.position, index)
            for index, outcome in enumerate(outcomes)
            if isinstance(outcome, AppendResult)
        )
        seen_versions = {s: {self.model.version(s)} for s, _, _ in requests}
        for _, index in won:
            stream_id, events, expected = requests[index]
            if expected is not None:
                assert expected == self.model.version(stream_id), (requests, outcomes)
            assert outcomes[index] == self.model.apply(stream_id, events), (requests, outcomes)
            seen_versions[stream_id].add(self.model.version(stream_id))
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, ConcurrencyError):
                stream_id, _, expected = requests[index]
                assert outcome.stream_id == stream_id
                assert outcome.expected_version == expected != outcome.actual_version
                assert outcome.actual_version in seen_versions[stream_id], (requests, outcomes)

    @rule(data=st.data(), stream_id=stream_ids, state=json_values)
    def save_snapshot(self, data: st.DataObject, stream_id: str, state: Any) -> None:
        current = self.model.version(stream_id)
        if current == 0:
            with pytest.raises(ValueError, match="snapshot"):
                self.call(self.journal.save_snapshot, stream_id, 1, state)
            return
        version = data.draw(st.integers(1, current), label="version")
        metadata = {"schema": data.draw(st.integers(0, 3), label="schema")}
        self.call(self.journal.save_snapshot, stream_id, version, state, metadata)
        self.model.snapshots.setdefault(stream_id, []).append((version, state, metadata))

    @rule(stream_id=stream_ids)
    def snapshot_beyond_head_is_refused(self, stream_id: str) -> None:
        with pytest.raises(ValueError, match="snapshot"):
            self.call(self.journal.save_snapshot, stream_id, self.model.version(stream_id) + 1, {})

    # -- reading -----------------------------------------------------------------------------

    @rule(
        stream_id=stream_ids,
        from_version=st.integers(1, 12),
        span=st.none() | st.integers(-1, 12),
    )
    def read(self, stream_id: str, from_version: int, span: int | None) -> None:
        to_version = None if span is None else from_version + span
        got = self.call(collect, self.journal.read(stream_id, from_version, to_version))
        positions = self.model.streams.get(stream_id, [])
        stop = len(positions) if to_version is None else min(to_version, len(positions))
        expected = [self.model.log[p - 1] for p in positions[from_version - 1 : stop]]
        assert [as_model(e) for e in got] == expected

    @rule(from_position=st.integers(1, 40), span=st.none() | st.integers(0, 20))
    def read_all(self, from_position: int, span: int | None) -> None:
        to_position = None if span is None else from_position + span
        got = self.call(collect, self.journal.read_all(from_position, to_position))
        end = len(self.model.log) if to_position is None else to_position
        assert [as_model(e) for e in got] == self.model.log[from_position - 1 : end]

    @rule(stream_id=stream_ids, max_version=st.none() | st.integers(0, 12))
    def load_snapshot(self, stream_id: str, max_version: int | None) -> None:
        got = self.call(self.journal.load_snapshot, stream_id, max_version)
        candidates = [
            (version, order, state, metadata)
            for order, (version, state, metadata) in enumerate(
                self.model.snapshots.get(stream_id, [])
            )
            if max_version is None or version <= max_version
        ]
        if not candidates:
            assert got is None
            return
        # The latest version wins; among snapshots at one version, the last saved.
        version, _, state, metadata = max(candidates, key=lambda c: (c[0], c[1]))
        assert got is not None
        assert (got.stream_id, got.version, got.data, dict(got.metadata)) == (
            stream_id,
            version,
            state,
            metadata,
        )

    @rule(
        stream_id=stream_ids,
        schema=st.integers(0, 4),
        max_version=st.none() | st.integers(0, 12),
    )
    def load_snapshot_matching(self, stream_id: str, schema: int, max_version: int | None) -> None:
        got = self.call(
            self.journal.load_snapshot_matching, stream_id, {"schema": schema}, max_version
        )
        # Of each version the last saved (the one load_snapshot answers), the latest of the
        # schema.
        last_saved: dict[int, tuple[Any, dict[str, Any]]] = {}
        for version, state, metadata in self.model.snapshots.get(stream_id, []):
            if max_version is None or version <= max_version:
                last_saved[version] = (state, metadata)
        matching = [v for v, (_, metadata) in last_saved.items() if metadata == {"schema": schema}]
        if not matching:
            assert got is None
            return
        version = max(matching)
        assert got is not None
        assert (got.stream_id, got.version, got.data, dict(got.metadata)) == (
            stream_id,
            version,
            *last_saved[version],
        )

    @invariant()
    def versions_and_head_agree(self) -> None:
        assert self.call(self.journal.head_position) == len(self.model.log)
        for stream_id in STREAM_IDS:
            assert self.call(self.journal.stream_version, stream_id) == self.model.version(
                stream_id
            )


class MemoryJournalMachine(JournalMachine):
    def open_journal(self) -> Journal:
        return MemoryJournal()

    # A MemoryJournal cannot be reopened; a closed one refuses appends.
    @precondition(lambda self: len(self.model.log) > 0)
    @rule()
    def closed_journal_refuses_appends(self) -> None:
        from journals import JournalClosed

        self.close_journal()
        with pytest.raises(JournalClosed):
            self.call(self._append, "account-1", [NewEvent("Late", {})], None)
        # Continue on a fresh journal: the model starts over with it.
        self.model = JournalModel()
        self.journal = self._enter(self.open_journal())


class MemoryJournalTrioMachine(MemoryJournalMachine):
    backend = "trio"


class FileJournalMachine(JournalMachine):
    """The same contract on FileJournal, plus reopening and torn tails.

    Small segments make the journal roll often. A torn tail is made the way a crash makes
    one: an append is written, then its batch is cut at a random byte (as if the process died
    during the write), so it was never acknowledged; reopening must cut exactly that batch.
    """

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="stateful-")
        self.path = Path(self._directory.name) / "journal"
        super().__init__()
        self._exit.callback(self._directory.cleanup)

    def open_journal(self) -> Journal:
        return FileJournal(self.path, segment_bytes_max=SEGMENT_BYTES_MAX)

    def reopen(self) -> FileJournal:
        self.close_journal()
        journal = FileJournal(self.path, segment_bytes_max=SEGMENT_BYTES_MAX)
        self.journal = self._enter(journal)
        return journal

    @rule()
    def reopen_keeps_everything(self) -> None:
        journal = self.reopen()
        assert journal.recovery_report.torn_tails == ()
        assert journal.recovery_report.events == len(self.model.log)

    @rule(stream_id=stream_ids, events=event_lists, cut=st.floats(0.0, 1.0, exclude_max=True))
    def torn_tail(self, stream_id: str, events: list[NewEvent], cut: float) -> None:
        before = {p.name: p.stat().st_size for p in self.path.glob("*.log")}
        self.call(self._append, stream_id, events, None)
        self.close_journal()
        without_clean_close(self.path)  # The cut below stands for a crash during the write.
        last = max(self.path.glob("*.log"))
        start = before.get(last.name, 0)
        keep = start + int((last.stat().st_size - start) * cut)
        os.truncate(last, keep)
        journal = self.reopen()
        tails = journal.recovery_report.torn_tails
        if keep == start and last.name in before:
            assert tails == ()
        else:
            assert len(tails) == 1, tails
            assert Path(tails[0].path).name == last.name
            if last.name in before:
                assert (tails[0].offset, tails[0].bytes_cut) == (start, keep - start)
        # The cut append was never acknowledged: the journal holds exactly the model.

    @invariant()
    def verifies(self) -> None:
        if self._verify_count % 5 == 0:
            report = verify_journal(self.path)
            assert report.intact, report.problem
            assert report.events == len(self.model.log)
        self._verify_count += 1

    _verify_count = 0


class FileJournalTrioMachine(FileJournalMachine):
    backend = "trio"


_fast = settings(
    max_examples=examples(20),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MemoryJournalMachine.TestCase.settings = _fast
MemoryJournalTrioMachine.TestCase.settings = _fast
FileJournalMachine.TestCase.settings = _fast
FileJournalTrioMachine.TestCase.settings = settings(_fast, max_examples=examples(8))
TestMemoryJournalStateful = MemoryJournalMachine.TestCase
TestMemoryJournalStatefulTrio = MemoryJournalTrioMachine.TestCase
TestFileJournalStateful = FileJournalMachine.TestCase
TestFileJournalStatefulTrio = FileJournalTrioMachine.TestCase
