"""MemoryJournal against the journal contract, plus what only it offers."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from journals import (
    ConcurrencyError,
    Journal,
    JournalClosed,
    JournalFailed,
    MemoryJournal,
    NewEvent,
)

from .journal_conformance import JournalConformance, collect
from .journal_conformance_snapshots import SnapshotConformance
from .journal_conformance_start_append import placed, settled


class TestMemoryJournalConformance(JournalConformance):
    def make_journal(self, directory: Path) -> Journal:
        return MemoryJournal()


class _DefaultLookup(MemoryJournal):
    """A journal that looks snapshots up by metadata as the ``Journal`` ABC does."""

    load_snapshot_matching = Journal.load_snapshot_matching


class TestDefaultLookupByMetadata(SnapshotConformance):
    """The snapshot rules kept by the ABC's own ``load_snapshot_matching``, which a backend
    that does not look in its own store inherits."""

    def make_journal(self, directory: Path) -> Journal:
        return _DefaultLookup()


@pytest.mark.anyio
async def test_fail_fails_pending_and_later_appends_and_keeps_what_was_committed() -> None:
    outcomes: list[object] = []

    async def attempt(journal: MemoryJournal, index: int) -> None:
        try:
            outcomes.append(
                await journal.append("s", [NewEvent("X", index)], expected_version=None)
            )
        except JournalFailed as error:
            outcomes.append(error)

    async with MemoryJournal() as journal:
        await journal.append("s", [NewEvent("X", "committed")], expected_version=0)
        async with anyio.create_task_group() as group:
            for index in range(3):
                group.start_soon(attempt, journal, index)
            await anyio.lowlevel.checkpoint()  # The three appends are now queued, not committed.
            journal.fail(OSError(5, "Input/output error"))
        assert len(outcomes) == 3
        assert all(isinstance(outcome, JournalFailed) for outcome in outcomes)
        with pytest.raises(JournalFailed, match="failed earlier"):
            await journal.append("s", [NewEvent("X", "later")], expected_version=None)
        assert [e.data for e in await collect(journal.read("s"))] == ["committed"]
        assert await journal.stream_version("s") == 1


@pytest.mark.anyio
async def test_fail_fails_started_appends_and_wakes_every_wait() -> None:
    async with MemoryJournal() as journal:
        await settled(journal.start_append("s", [NewEvent("X", 0)], expected_version=0))
        started = [
            placed(journal.start_append("s", [NewEvent("X", 1)], expected_version=1)),
            placed(journal.start_append_columns("t", ["X"], [2], expected_version=0)),
        ]
        further = started[0][1].wait()
        journal.fail(OSError(5, "Input/output error"))
        await further
        for durable, outcome, _, _ in started:
            await durable
            with pytest.raises(JournalFailed, match="failed before this append was committed"):
                outcome.raise_error()
        # Refused at once, with nothing placed.
        with pytest.raises(JournalFailed, match="failed earlier"):
            journal.start_append("s", [NewEvent("X", 3)], expected_version=None)
        with pytest.raises(JournalFailed, match="failed earlier"):
            journal.start_append_columns("s", ["X"], [3], expected_version=None)
        assert [e.data for e in await collect(journal.read_all())] == [0]
        assert journal.statistics().batches == 1


@pytest.mark.anyio
async def test_reads_see_a_started_append_only_once_it_is_committed() -> None:
    async with MemoryJournal() as journal:
        durable, outcome, version, position = placed(
            journal.start_append("s", [NewEvent("X", 1)], expected_version=0)
        )
        # Placed, not committed: the version is taken, and reads do not see it yet.
        with pytest.raises(ConcurrencyError):
            journal.start_append("s", [NewEvent("X", 2)], expected_version=0)
        assert (await journal.stream_version("s"), await journal.head_position()) == (0, 0)
        await durable
        outcome.raise_error()
        assert (await journal.stream_version("s"), await journal.head_position()) == (1, 1)
        assert (version, position) == (1, 1)


@pytest.mark.anyio
async def test_a_memory_journal_takes_appends_only_while_open() -> None:
    journal = MemoryJournal()
    with pytest.raises(JournalClosed, match=r"never opened with 'async with'\); no more appends"):
        journal.start_append("s", [NewEvent("X", 1)], expected_version=0)
    with pytest.raises(JournalClosed, match=r"never opened with .async with.\); no more appends"):
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
    async with journal:
        with pytest.raises(JournalClosed, match="open already"):
            await journal.__aenter__()
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
    with pytest.raises(JournalClosed, match="was closed; create a new one"):
        await journal.__aenter__()


@pytest.mark.anyio
async def test_appends_its_opener_abandons_fail_as_closed_and_later_ones_are_refused() -> None:
    journal = MemoryJournal()
    with anyio.CancelScope() as scope:
        async with journal:
            durable, outcome, _, _ = placed(
                journal.start_append("s", [NewEvent("X", 1)], expected_version=0)
            )
            scope.cancel()  # the opener's task is cancelled before the append is committed
            await anyio.lowlevel.checkpoint()
    await durable
    with pytest.raises(JournalClosed, match="task that opened it was cancelled") as refused:
        outcome.raise_error()
    assert "Keep the journal open in a task that outlives every task that appends" in str(
        refused.value
    )
    with pytest.raises(JournalClosed, match="closed"):
        journal.start_append("s", [NewEvent("X", 2)], expected_version=None)
    assert journal.statistics().head_position == 0  # Nothing was committed.


@pytest.mark.anyio
async def test_the_log_keeps_an_event_in_about_what_it_holds() -> None:
    # orjson's output of a small value is a bytes object of a few bytes on a buffer of about
    # 4 KiB (orjson 3.12 and later); kept as it comes, that is what every event in the log
    # would cost. What a one-field event costs is its record (~100 bytes), its position
    # (~36), its data and its timestamp. A few thousand events show it as well as more
    # would (the log's own growth makes a larger count cost a little more per event, not
    # less), and every allocation traced makes each append many times slower.
    events = 2_000
    async with MemoryJournal() as journal:
        await journal.append("warm-up", [NewEvent("X", {"n": 0})], expected_version=None)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for number in range(events):
                metadata = {"n": number}
                event = NewEvent("X", {"n": number}, metadata)
                await journal.append(f"s-{number % 10}", [event], expected_version=None)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert (await journal.head_position()) == events + 1
    assert held / events < 512, f"{held / events:.0f} bytes per event"


class _ExplodingPositions(dict[str, list[int]]):
    """The journal's stream positions; armed, publishing a batch's event of stream "b" raises."""

    armed = False

    def setdefault(self, key: str, default: list[int] | None = None) -> list[int]:
        if self.armed and key == "b":
            raise MemoryError("injected while publishing")
        return super().setdefault(key, [] if default is None else default)


@pytest.mark.anyio
async def test_an_unexpected_error_in_the_committer_fails_the_journal() -> None:
    # Fail-stop, as FileJournal's committer: every waiting append is answered (none hangs,
    # inside or outside the task group that opened the journal), later ones are refused, reads
    # show exactly what was acknowledged, and the opener's block is not torn down.
    journal = MemoryJournal()
    positions = journal._positions = _ExplodingPositions()
    answers: dict[str, object] = {}

    async def attempt(name: str, stream_id: str) -> None:
        try:
            answers[name] = await journal.append(
                stream_id, [NewEvent("X", name)], expected_version=None
            )
        except JournalFailed as error:
            answers[name] = error

    with anyio.fail_after(10):  # A bound for a hang, not a speed requirement.
        async with anyio.create_task_group() as outside, journal:
            await journal.append("a", [NewEvent("X", "acknowledged")], expected_version=0)
            positions.armed = True
            outside.start_soon(attempt, "outside", "b")
            await anyio.lowlevel.checkpoint()  # Placed, not committed yet.
            await attempt("inside", "a")
            while "outside" not in answers:  # Woken with "inside" (trio picks the order).
                await anyio.lowlevel.checkpoint()
            for name in ("outside", "inside"):
                answer = answers[name]
                assert isinstance(answer, JournalFailed), answers
                assert "committer stopped on an unexpected error" in str(answer)
                assert isinstance(answer.__cause__, MemoryError)
            with pytest.raises(JournalFailed, match="failed earlier"):
                await journal.append("a", [NewEvent("X", "later")], expected_version=None)
            assert [e.data for e in await collect(journal.read_all())] == ["acknowledged"]
            assert (await journal.stream_version("a"), await journal.stream_version("b")) == (
                1,
                0,
            )
            assert (journal.statistics().appends, journal.statistics().head_position) == (1, 1)
