"""A journal whose group commits the test performs by hand (``commit()``, ``fail()``).

It keeps the journal contract's ordering rule (an append takes its place before it first
yields) and its fail-stop rule, so tests can hold events between "placed" and "durable".
With ``start_appends=True`` it also offers ``start_append``, so the runtime's path for
journals that place appends without a coroutine is held the same way.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, Self

import anyio
import orjson
import pytest

from journals import (
    AppendResult,
    ConcurrencyError,
    Journal,
    JournalFailed,
    JournalStatistics,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StartedAppend,
    decode_data,
)


class _Outcome:
    """A placed append: set once committed (with its last position) or failed."""

    def __init__(self, entries: list[tuple[str, int, NewEvent]]) -> None:
        self.entries = entries
        self.done = anyio.Event()
        self.position: int | None = None
        self.failure: BaseException | None = None

    def raise_error(self) -> None:
        if self.position is None:
            raise JournalFailed(f"failed before this append was committed: {self.failure!r}")

    def wait(self) -> Awaitable[None]:
        return self.done.wait()


class _Queued:
    """An append waiting for room (a ``QueuedAppend``), placed by ``ManualJournal.make_room``."""

    def __init__(self, queue: list[_Queued], place: Any) -> None:
        self.queue = queue
        self.place = place
        self.ready = anyio.Event()
        self.placed: StartedAppend | None = None
        self.error: Exception | None = None

    def wait(self) -> Awaitable[None]:
        return self.ready.wait()

    def started(self) -> StartedAppend:
        if self.error is not None:
            raise self.error
        assert self.placed is not None
        return self.placed

    def withdraw(self) -> bool:
        if not self.ready.is_set():
            self.queue.remove(self)
            return True
        return self.error is not None


class ManualJournal(Journal):
    """``full``: (with ``start_appends``) no room; appends wait in ``queued`` for ``make_room``."""

    def __init__(self, *, start_appends: bool = False) -> None:
        self.log: list[RecordedEvent] = []
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.snapshots: dict[str, list[Snapshot]] = {}
        self._tentative: dict[str, int] = {}
        self._pending: list[_Outcome] = []
        self._failure: BaseException | None = None
        self._start_appends = start_appends
        self.appends = 0
        self.full = False
        self.queued: list[_Queued] = []

    async def __aenter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        self.commit()

    @property
    def pending(self) -> int:
        """Appends placed in the log and not yet committed."""
        return len(self._pending)

    def commit(self, appends: int | None = None) -> None:
        """Make the first ``appends`` pending appends (all by default) durable, in order."""
        count = len(self._pending) if appends is None else appends
        batch, self._pending = self._pending[:count], self._pending[count:]
        for outcome in batch:
            for stream_id, version, event in outcome.entries:
                recorded = RecordedEvent(
                    stream_id,
                    version,
                    len(self.log) + 1,
                    event.type,
                    decode_data(orjson.dumps(event.data)),
                    event.metadata,
                    time.time_ns(),
                )
                self.log.append(recorded)
                self.streams.setdefault(stream_id, []).append(recorded)
            outcome.position = self.log[-1].position
            outcome.done.set()

    def fail(self, cause: BaseException) -> None:
        """Fail the journal: every pending and later append raises JournalFailed."""
        self._failure = cause
        pending, self._pending = self._pending, []
        for outcome in pending:
            outcome.failure = cause
            outcome.done.set()

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> AppendResult:
        outcome = self._place(stream_id, events, expected_version)
        await outcome.done.wait()
        outcome.raise_error()
        assert outcome.position is not None
        return AppendResult(outcome.entries[-1][1], outcome.position)

    def start_append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> StartedAppend | None:
        if not self._start_appends or self.full or self.queued:
            return None
        return self._start(stream_id, events, expected_version)

    def queue_append_columns(
        self,
        stream_id: str,
        types: Sequence[str],
        data: Sequence[Any],
        *,
        expected_version: int | None,
    ) -> _Queued | None:
        if not self._start_appends:
            return None
        events = [
            NewEvent(event_type, value) for event_type, value in zip(types, data, strict=True)
        ]
        queued = _Queued(self.queued, lambda: self._start(stream_id, events, expected_version))
        self.queued.append(queued)
        return queued

    def make_room(self, appends: int | None = None) -> None:
        """Place the first ``appends`` queued appends (all by default), in order."""
        count = len(self.queued) if appends is None else appends
        placing, self.queued[:] = self.queued[:count], self.queued[count:]
        for queued in placing:
            try:
                queued.placed = queued.place()
            except (ConcurrencyError, JournalFailed) as error:
                queued.error = error
            queued.ready.set()

    def _start(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> StartedAppend:
        outcome = self._place(stream_id, events, expected_version)
        version = outcome.entries[-1][1]
        # The position is what it will be: appends commit in the order they were placed.
        position = len(self.log) + sum(len(pending.entries) for pending in self._pending)
        return outcome.done.wait(), outcome, version, position

    def _place(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int | None
    ) -> _Outcome:
        if self._failure is not None:
            raise JournalFailed(f"failed earlier: {self._failure!r}")
        version = self._tentative.get(stream_id, 0)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        for event in events:
            orjson.dumps(event.data)
        outcome = _Outcome([(stream_id, version + i + 1, event) for i, event in enumerate(events)])
        self._tentative[stream_id] = version + len(events)
        self._pending.append(outcome)
        self.appends += 1
        return outcome

    async def save_snapshot(
        self, stream_id: str, version: int, data: Any, metadata: Mapping[str, Any] | None = None
    ) -> None:
        if not 1 <= version <= len(self.streams.get(stream_id, ())):
            raise ValueError(f"snapshot at version {version} is not durable")
        snapshot = Snapshot(
            stream_id, version, decode_data(orjson.dumps(data)), dict(metadata or {}), 0
        )
        self.snapshots.setdefault(stream_id, []).append(snapshot)
        await anyio.lowlevel.checkpoint()

    async def load_snapshot(
        self, stream_id: str, max_version: int | None = None
    ) -> Snapshot | None:
        await anyio.lowlevel.checkpoint()
        candidates = [
            s
            for s in self.snapshots.get(stream_id, ())
            if max_version is None or s.version <= max_version
        ]
        return max(candidates, key=lambda s: s.version) if candidates else None

    async def read(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        last = to_version if to_version is not None else len(self.streams.get(stream_id, ()))
        for event in list(self.streams.get(stream_id, ())):
            if from_version <= event.version <= last:
                yield event
        await anyio.lowlevel.checkpoint()

    async def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        for event in list(self.log[from_position - 1 : to_position]):
            yield event
        await anyio.lowlevel.checkpoint()

    async def stream_version(self, stream_id: str) -> int:
        return len(self.streams.get(stream_id, ()))

    async def head_position(self) -> int:
        return len(self.log)

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            streams=len(self.streams),
            events=len(self.log),
            head_position=len(self.log),
            appends=self.appends,
            appended_events=len(self.log),
            batches=0,
            fsyncs=0,
            bytes_written=0,
            index_bytes=0,
        )


@pytest.mark.anyio
async def test_the_manual_journal_holds_appends_until_committed() -> None:
    journal = ManualJournal()
    results: list[AppendResult] = []

    failures: list[BaseException] = []

    async def append(amount: int, expected: int) -> None:
        try:
            result = await journal.append(
                "s", [NewEvent("E", {"a": amount})], expected_version=expected
            )
        except JournalFailed as failure:
            failures.append(failure)
        else:
            results.append(result)

    async with anyio.create_task_group() as tg:
        tg.start_soon(append, 1, 0)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(append, 2, 1)
        await anyio.wait_all_tasks_blocked()
        assert journal.pending == 2
        assert await journal.stream_version("s") == 0
        journal.commit(1)
        await anyio.wait_all_tasks_blocked()
        assert results == [AppendResult(1, 1)]
        journal.fail(OSError("EIO"))
    assert results == [AppendResult(1, 1)]
    assert len(failures) == 1
    assert await journal.stream_version("s") == 1


@pytest.mark.anyio
async def test_start_append_places_at_once_and_answers_what_append_would() -> None:
    journal = ManualJournal(start_appends=True)
    first = journal.start_append("s", [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0)
    second = journal.start_append("t", [NewEvent("E", 3)], expected_version=None)
    assert first is not None
    assert second is not None
    assert (first[2], first[3], second[2], second[3]) == (2, 2, 1, 3)
    assert journal.pending == 2
    journal.commit()
    for durable, outcome, _, _ in (first, second):
        await durable
        outcome.raise_error()
    assert [(e.stream_id, e.version, e.position) for e in journal.log] == [
        ("s", 1, 1),
        ("s", 2, 2),
        ("t", 1, 3),
    ]
    assert ManualJournal().start_append("s", [NewEvent("E", 4)], expected_version=2) is None


@pytest.mark.anyio
async def test_the_default_start_append_columns_goes_through_start_append() -> None:
    journal = ManualJournal(start_appends=True)
    placed = journal.start_append_columns("s", ["A", "B"], [1, {"b": 2}], expected_version=0)
    assert placed is not None
    assert (placed[2], placed[3]) == (2, 2)
    with pytest.raises(ValueError, match="2 event types but 1 data values"):
        journal.start_append_columns("s", ["A", "B"], [1], expected_version=None)
    journal.commit()
    await placed[0]
    placed[1].raise_error()
    assert [(e.version, e.type, e.data) for e in journal.log] == [(1, "A", 1), (2, "B", {"b": 2})]
    # Without a start_append of its own a backend answers None, unchecked: append does the rest.
    assert _WithoutStartAppend().start_append_columns("s", ["A"], [], expected_version=9) is None
    # Nor can it queue an append for room (the ABC's default).
    assert _WithoutStartAppend().queue_append_columns("s", ["A"], [1], expected_version=0) is None


class _WithoutStartAppend(ManualJournal):
    """A backend with no ``start_append`` of its own (the ABC's default)."""

    start_append = Journal.start_append
