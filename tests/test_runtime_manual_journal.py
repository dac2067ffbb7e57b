"""A journal whose group commits the test performs by hand (``commit()``, ``fail()``).

It keeps the journal contract's ordering rule (an append takes its place before it first
yields) and its fail-stop rule, so tests can hold events between "placed" and "durable".
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
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
    decode_data,
)


class ManualJournal(Journal):
    def __init__(self) -> None:
        self.log: list[RecordedEvent] = []
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.snapshots: dict[str, list[Snapshot]] = {}
        self._tentative: dict[str, int] = {}
        self._pending: list[tuple[list[tuple[str, int, NewEvent]], anyio.Event, list[Any]]] = []
        self._failure: BaseException | None = None
        self.appends = 0

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
        for entries, done, outcome in batch:
            for stream_id, version, event in entries:
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
            outcome.append(self.log[-1].position)
            done.set()

    def fail(self, cause: BaseException) -> None:
        """Fail the journal: every pending and later append raises JournalFailed."""
        self._failure = cause
        pending, self._pending = self._pending, []
        for _, done, _ in pending:
            done.set()

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int | None
    ) -> AppendResult:
        if self._failure is not None:
            raise JournalFailed(f"failed earlier: {self._failure!r}")
        version = self._tentative.get(stream_id, 0)
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(stream_id, expected_version, version)
        for event in events:
            orjson.dumps(event.data)
        entries = [(stream_id, version + i + 1, event) for i, event in enumerate(events)]
        self._tentative[stream_id] = version + len(events)
        done = anyio.Event()
        outcome: list[Any] = []
        self._pending.append((entries, done, outcome))
        self.appends += 1
        await done.wait()
        if not outcome:
            raise JournalFailed(f"failed before this append was committed: {self._failure!r}")
        return AppendResult(entries[-1][1], outcome[0])

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
