"""The journal contract's ``start_append`` path, part of the suite run against every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio. Every backend here offers the path (``start_append`` may answer ``None`` only when an
append would wait for room, which these small appends never do).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from journals import (
    AppendResult,
    ConcurrencyError,
    EventEncodingError,
    InvalidStreamId,
    Journal,
    JournalClosed,
    NewEvent,
    StartedAppend,
)


def _events(*payloads: Any) -> list[NewEvent]:
    return [NewEvent("Happened", payload) for payload in payloads]


def placed(started: StartedAppend | None) -> StartedAppend:
    """The started append; a backend of this suite always places small appends at once."""
    assert started is not None, "start_append answered None: this backend must offer the path"
    return started


async def settled(started: StartedAppend | None) -> AppendResult:
    """Wait for a started append as ``append`` would, and answer what it would have."""
    durable, outcome, version, position = placed(started)
    await durable
    outcome.raise_error()
    return AppendResult(version, position)


Refused = Callable[[Journal], object]
"""A start_append (or start_append_columns) call that must raise before placing anything."""

REFUSALS: list[tuple[str, Refused, type[Exception], str]] = [
    (
        "empty stream id",
        lambda j: j.start_append("", _events(1), expected_version=None),
        InvalidStreamId,
        "must not be empty",
    ),
    (
        "no events",
        lambda j: j.start_append("s", [], expected_version=None),
        ValueError,
        "at least one event",
    ),
    (
        "one NewEvent, not a list",
        lambda j: j.start_append("s", NewEvent("One", 1), expected_version=None),  # type: ignore[arg-type]
        ValueError,
        "a list of NewEvent",
    ),
    (
        "unencodable data",
        lambda j: j.start_append("s", _events(1, {"set": {1, 2}}), expected_version=None),
        EventEncodingError,
        "nothing of this append was written",
    ),
    (
        "unencodable metadata",
        lambda j: j.start_append("s", [NewEvent("X", 1, {"at": object()})], expected_version=1),
        EventEncodingError,
        "metadata",
    ),
    (
        "non-finite float",
        lambda j: j.start_append("s", _events({"v": math.nan}), expected_version=1),
        EventEncodingError,
        "non-finite float",
    ),
    (
        "stale expected version",
        lambda j: j.start_append("s", _events(2), expected_version=0),
        ConcurrencyError,
        "'s' is at version 1",
    ),
    (
        "expected version ahead",
        lambda j: j.start_append("s", _events(2), expected_version=5),
        ConcurrencyError,
        "'s' is at version 1",
    ),
    (
        "negative expected version",
        lambda j: j.start_append("s", _events(2), expected_version=-1),
        ValueError,
        "expected_version",
    ),
    (
        "unencodable data and a bool as expected version",
        lambda j: j.start_append("s", _events({"set": {1}}), expected_version=True),
        EventEncodingError,
        "nothing of this append was written",
    ),
    (
        "columns of different lengths",
        lambda j: j.start_append_columns("s", ["A", "B"], [1], expected_version=1),
        ValueError,
        "2 event types but 1 data values",
    ),
    (
        "columns of different lengths for an invalid stream id",
        lambda j: j.start_append_columns("", ["A", "B"], [1], expected_version=1),
        InvalidStreamId,
        "must not be empty",
    ),
    (
        "unencodable column",
        lambda j: j.start_append_columns("s", ["A"], [{"set": {1}}], expected_version=1),
        EventEncodingError,
        "nothing of this append was written",
    ),
    (
        "stale expected version, columns",
        lambda j: j.start_append_columns("s", ["A"], [2], expected_version=0),
        ConcurrencyError,
        "'s' is at version 1",
    ),
]


class StartAppendConformance(abc.ABC):
    """``start_append`` and ``start_append_columns`` against a backend (see the module)."""

    @abc.abstractmethod
    def make_journal(self, directory: Path) -> Journal:
        """A new, not yet opened journal kept in ``directory`` (ignored by memory backends)."""

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("refused", "error", "message"),
        [case[1:] for case in REFUSALS],
        ids=[case[0] for case in REFUSALS],
    )
    async def test_start_append_raises_what_append_raises_before_placing_anything(
        self, tmp_path: Path, refused: Refused, error: type[Exception], message: str
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", _events(1), expected_version=0)
            with pytest.raises(error, match=message):
                refused(journal)  # raised by the call itself, before any await
            assert await journal.head_position() == 1
            assert await journal.stream_version("s") == 1
            # Nothing was reserved either: the next append takes the next version and position.
            started = journal.start_append("s", _events(2), expected_version=1)
            assert await settled(started) == AppendResult(version=2, position=2)
            assert await journal.head_position() == 2

    @pytest.mark.anyio
    async def test_a_closed_journal_refuses_start_append(self, tmp_path: Path) -> None:
        journal = self.make_journal(tmp_path)
        async with journal:
            await journal.append("s", _events(1), expected_version=0)
        with pytest.raises(JournalClosed, match="closed"):
            journal.start_append("s", _events(2), expected_version=1)
        with pytest.raises(JournalClosed, match="closed"):
            journal.start_append_columns("s", ["A"], [2], expected_version=1)
        # The journal's state is named first, as by start_append, whatever else is wrong.
        with pytest.raises(JournalClosed, match="closed"):
            journal.start_append_columns("s", ["A", "B"], [2], expected_version=1)
        with pytest.raises(JournalClosed, match="closed"):
            journal.start_append_columns("", ["A"], [2], expected_version=1)

    @pytest.mark.anyio
    async def test_closing_commits_what_was_placed_and_not_yet_awaited(
        self, tmp_path: Path
    ) -> None:
        journal = self.make_journal(tmp_path)
        async with journal:
            first = journal.start_append("s", _events(1, 2), expected_version=0)
            second = journal.start_append_columns("t", ["A"], [3], expected_version=0)
        assert await settled(first) == AppendResult(version=2, position=2)
        assert await settled(second) == AppendResult(version=1, position=3)

    @pytest.mark.anyio
    async def test_an_append_placed_first_commits_first(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            first = journal.start_append("a", _events(1), expected_version=0)
            # Placed after the first (append places before it yields), so committed after it.
            second = await journal.append("b", _events(2), expected_version=0)
            assert await journal.stream_version("a") == 1
            assert second == AppendResult(version=1, position=2)
            assert await settled(first) == AppendResult(version=1, position=1)

    @pytest.mark.anyio
    async def test_statistics_count_appends_once_they_are_committed(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            before = journal.statistics().appends
            first = journal.start_append("a", _events(1, 2), expected_version=0)
            second = journal.start_append("b", _events(3), expected_version=0)
            assert journal.statistics().appends == before  # placed, not committed yet
            await settled(first)
            await settled(second)
            after = journal.statistics()
            assert after.appends == before + 2
            assert after.appended_events >= 3

    @pytest.mark.anyio
    async def test_start_append_and_append_interleave_in_call_order(self, tmp_path: Path) -> None:
        called: list[int] = []
        answered: dict[int, AppendResult] = {}

        async def call(journal: Journal, index: int) -> None:
            called.append(index)
            # Versions are reserved at call time by either path, so each call may expect the
            # version the calls before it leave.
            stream, expected = f"s{index % 3}", sum(1 for i in called if i % 3 == index % 3) - 1
            if index % 2:
                started = journal.start_append(stream, _events(index), expected_version=expected)
                answered[index] = await settled(started)
            else:
                events = _events(index)
                answered[index] = await journal.append(stream, events, expected_version=expected)

        async with self.make_journal(tmp_path) as journal:
            async with anyio.create_task_group() as group:
                for index in range(60):
                    group.start_soon(call, journal, index)
            everything = [event async for event in journal.read_all()]
        assert [event.data for event in everything] == called
        for position, index in enumerate(called, start=1):
            event = everything[position - 1]
            assert answered[index] == AppendResult(event.version, position)

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    @pytest.mark.anyio
    async def test_waits_on_an_outcome_are_woken_in_the_order_they_were_made(
        self, tmp_path: Path
    ) -> None:
        # On asyncio tasks woken together run in the order they were woken; trio picks that
        # order itself (the next test holds there what does not depend on it).
        woken: list[str] = []

        async def wait(name: str, awaitable: Awaitable[Any]) -> None:
            await awaitable
            woken.append(name)

        async with self.make_journal(tmp_path) as journal:
            durable_a, outcome_a, _, _ = placed(
                journal.start_append("a", _events(1), expected_version=0)
            )
            again = outcome_a.wait()  # made after a was placed, before b is
            durable_b, _, _, _ = placed(journal.start_append("b", _events(2), expected_version=0))
            async with anyio.create_task_group() as group:
                # Started in the reverse order, so that only the order of the waits counts.
                group.start_soon(wait, "b", durable_b)
                group.start_soon(wait, "a again", again)
                group.start_soon(wait, "a", durable_a)
        assert woken == ["a", "a again", "b"]

    @pytest.mark.anyio
    async def test_an_outcome_wait_ends_once_the_append_is_committed(self, tmp_path: Path) -> None:
        committed_when_woken: dict[str, int] = {}

        async def wait(name: str, awaitable: Awaitable[Any], journal: Journal) -> None:
            await awaitable
            committed_when_woken[name] = journal.statistics().head_position

        async with self.make_journal(tmp_path) as journal:
            durable, outcome, version, position = placed(
                journal.start_append("s", _events(1, 2), expected_version=0)
            )
            async with anyio.create_task_group() as group:
                group.start_soon(wait, "durable", durable, journal)
                group.start_soon(wait, "outcome", outcome.wait(), journal)
                group.start_soon(wait, "outcome again", outcome.wait(), journal)
            outcome.raise_error()
            later = outcome.wait()  # made once the append is committed: ends at once
            await later
        assert (version, position) == (2, 2)
        assert committed_when_woken == {"durable": 2, "outcome": 2, "outcome again": 2}

    @pytest.mark.anyio
    async def test_cancelling_one_wait_cancels_only_that_wait(self, tmp_path: Path) -> None:
        woken: list[str] = []
        cancelled: list[str] = []

        async def wait(name: str, awaitable: Awaitable[Any], scope: anyio.CancelScope) -> None:
            with scope:
                await awaitable
                woken.append(name)
            if scope.cancelled_caught:
                cancelled.append(name)

        async with self.make_journal(tmp_path) as journal:
            durable, outcome, _, _ = placed(
                journal.start_append("s", _events(1), expected_version=0)
            )
            doomed, kept = outcome.wait(), outcome.wait()
            behind = placed(journal.start_append("s", _events(2), expected_version=1))
            caller_gives_up, other_gives_up = anyio.CancelScope(), anyio.CancelScope()
            async with anyio.create_task_group() as group:
                group.start_soon(wait, "durable", durable, caller_gives_up)
                group.start_soon(wait, "doomed", doomed, other_gives_up)
                group.start_soon(wait, "kept", kept, anyio.CancelScope())
                group.start_soon(wait, "behind", behind[0], anyio.CancelScope())
                # The waiters run (and block) before this task resumes: two give up while
                # they wait. (No backend commits before the tasks ready now have run.)
                await anyio.lowlevel.checkpoint()
                caller_gives_up.cancel()
                other_gives_up.cancel()
            outcome.raise_error()
            behind[1].raise_error()
            # The caller stopped waiting; its append stays in the log, as do those after it.
            assert [event.data async for event in journal.read("s")] == [1, 2]
        assert sorted(woken) == ["behind", "kept"], (woken, cancelled)
        assert sorted(cancelled) == ["doomed", "durable"]
