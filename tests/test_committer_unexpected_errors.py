"""Fail-stop on an error that is not a disk's: a bug, MemoryError, an index that overflows.

The committer meets it before a batch's write, between the write and its sync, while it
publishes a synced batch, between publishing and waking, or while it wakes the appenders of a
published one. In every case the journal fails as on a failed fsync: every waiting append is
answered (none hangs, inside or outside the journal's task group), later appends raise
``JournalFailed``, reads show what was
acknowledged, the close writes no clean-close record, and reopening finds every acknowledged
append and nothing else but whole unacknowledged ones. A batch that was synced but not
published is answered ``JournalFailedAfterSync``: durable, found by reopening.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import journals._committer
import journals._wake
from journals import (
    AppendResult,
    FileJournal,
    JournalFailed,
    JournalFailedAfterSync,
    NewEvent,
    RecordedEvent,
)
from journals._committer import CommitQueue
from journals._file_writer import SegmentWriter
from journals.testing import FileIO

WAIT_S = 10.0
STAGES = ["before write", "before sync", "publishing", "published", "waking"]
ACKNOWLEDGED = {"published", "waking"}  # The batch was published when the error came.
TASKS = 3  # Appenders inside the journal's task group, and as many outside it.


class Injected(RuntimeError):
    """The unexpected error, raised by the code under test's collaborators."""


class HeldFileIO(FileIO):
    """Holds the next synced write until ``release``; with ``fail_before_sync``, the write
    after it reaches the file and then raises instead of syncing."""

    def __init__(self) -> None:
        self.hold: threading.Event | None = None
        self.held = threading.Event()
        self.fail_before_sync = False

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            self.held.set()
            assert hold.wait(WAIT_S), "the test did not release the held write"
        elif self.fail_before_sync:
            self.fail_before_sync = False
            self.pwrite_all(fd, data, offset)
            raise MemoryError("injected after the write, before its sync")
        super().write_durably(fd, data, offset)


class ExplodingStreams(set[str]):
    """The committer's active streams; armed, the second stream other than "a" added raises:
    publishing stops halfway, after the segment's offsets and two streams' positions."""

    def __init__(self, streams: set[str]) -> None:
        super().__init__(streams)
        self.armed = False
        self.added = 0

    def add(self, stream_id: str) -> None:
        if self.armed and stream_id != "a":
            self.added += 1
            if self.added == 2:
                self.armed = False
                raise Injected("injected while publishing")
        super().add(stream_id)


def arm(stage: str, monkeypatch: pytest.MonkeyPatch, journal: FileJournal, io: HeldFileIO) -> None:
    """Make the next batch the committer takes meet the unexpected error at ``stage``."""
    queue = journal._queue
    assert queue is not None
    if stage == "before write":
        commit = SegmentWriter.commit

        def failing_commit(self: SegmentWriter, *args: Any) -> Any:
            monkeypatch.setattr(SegmentWriter, "commit", commit)
            raise Injected("injected before the write")

        monkeypatch.setattr(SegmentWriter, "commit", failing_commit)
    elif stage == "before sync":
        io.fail_before_sync = True
    elif stage == "publishing":
        streams = ExplodingStreams(queue.active_streams)
        streams.armed = True
        queue.active_streams = streams
    elif stage == "published":
        committed = journals._wake.WakePacing.committed
        published: list[None] = []

        def failing_committed(self: journals._wake.WakePacing, seconds: float) -> None:
            committed(self, seconds)
            published.append(None)
            if len(published) == 2:  # The held batch is published first.
                raise Injected("injected after publishing, before waking")

        monkeypatch.setattr(journals._wake.WakePacing, "committed", failing_committed)
    else:
        wake = journals._wake.wake_appenders
        calls: list[None] = []

        async def failing_wake(*args: Any, **kwargs: Any) -> None:
            await wake(*args, **kwargs)
            calls.append(None)
            if len(calls) == 2:  # The held batch's appenders are woken first.
                raise Injected("injected after waking")

        monkeypatch.setattr(journals._committer, "wake_appenders", failing_wake)


async def _all_events(directory: Path) -> list[RecordedEvent]:
    async with FileJournal(directory) as journal:
        return [event async for event in journal.read_all()]


@pytest.mark.anyio
@pytest.mark.parametrize("stage", STAGES)
async def test_an_unexpected_error_in_the_committer_fails_the_journal(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stage: str,
) -> None:
    directory = tmp_path / "journal"
    io = HeldFileIO()
    answers: dict[str, AppendResult | BaseException] = {}
    all_answered = anyio.Event()

    async def append(stream_id: str) -> None:
        try:
            answers[stream_id] = await journal.append(
                stream_id, [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0
            )
        except JournalFailed as error:
            answers[stream_id] = error
        if len(answers) == 2 * TASKS:
            all_answered.set()

    # The outer task group outlives the journal: its appenders are not cancelled by it.
    async with anyio.create_task_group() as outside, FileJournal(directory, file_io=io) as journal:
        await journal.append("a", [NewEvent("E", 0)], expected_version=0)
        # A batch is held in its write while the appenders below join the next one.
        release = io.hold = threading.Event()
        held = journal.start_append("a", [NewEvent("E", 1)], expected_version=1)
        assert await anyio.to_thread.run_sync(io.held.wait, WAIT_S)
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as inside:
                for number in range(TASKS):
                    outside.start_soon(append, f"out{number}")
                    inside.start_soon(append, f"in{number}")
                placed = journal.start_append("b", [NewEvent("E", 3)], expected_version=0)
                await anyio.wait_all_tasks_blocked()
                arm(stage, monkeypatch, journal, io)
                caplog.clear()
                release.set()
        with anyio.fail_after(WAIT_S):
            await all_answered.wait()
        assert held is not None
        assert placed is not None
        await held[0]
        held[1].raise_error()  # Committed before the error: acknowledged.
        await placed[0]
        _check_answers(stage, answers, placed[1].raise_error)
        # Later appends fail fast, with the error as their cause.
        with pytest.raises(JournalFailed, match="failed earlier") as later:
            await journal.append("c", [NewEvent("E", 4)], expected_version=None)
        assert isinstance(later.value.__cause__, Injected | MemoryError)
        with pytest.raises(JournalFailed, match="failed earlier"):
            journal.start_append("c", [NewEvent("E", 4)], expected_version=None)
        # Reads show what was acknowledged, and only that.
        shown = [(event.stream_id, event.data) async for event in journal.read_all()]
        published = stage in ACKNOWLEDGED
        assert len(shown) == (2 + 2 * 2 * TASKS + 1 if published else 2)
        assert await journal.stream_version("b") == (1 if published else 0)
        for number in range(TASKS):
            for name in (f"in{number}", f"out{number}"):
                assert await journal.stream_version(name) == (2 if published else 0)
                mine = [event.data async for event in journal.read(name)]
                assert mine == ([1, 2] if published else [])
        assert journal.statistics().streams == (2 + 2 * TASKS if published else 1)
        assert [event.data async for event in journal.read("a")] == [0, 1]
        assert await journal.head_position() == len(shown)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "the error is logged once"
    assert errors[0].getMessage().startswith(f"the committer of the journal in {directory} stopped")
    assert "reopen the journal to recover its durable prefix" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], Injected | MemoryError)
    assert not (directory / "closed-cleanly").exists()
    events = await _all_events(directory)
    assert [(event.stream_id, event.data) for event in events[:2]] == [("a", 0), ("a", 1)]
    if stage == "before write":
        assert len(events) == 2
    else:
        # The failed batch is found whole (its bytes reached the file, and after "publishing"
        # its sync returned), at the version and position it was given.
        assert len(events) == 2 + 2 * 2 * TASKS + 1
        [b] = [event for event in events if event.stream_id == "b"]
        assert placed is not None
        assert (b.version, b.position) == (placed[2], placed[3])
        for number in range(TASKS):
            for name in (f"in{number}", f"out{number}"):
                mine = [event.data for event in events if event.stream_id == name]
                assert mine == [1, 2]


def _check_answers(
    stage: str,
    answers: dict[str, AppendResult | BaseException],
    raise_placed: Callable[[], None],
) -> None:
    outcomes = list(answers.values())
    try:
        raise_placed()
    except JournalFailed as error:
        outcomes.append(error)
    else:
        outcomes.append(AppendResult(1, 0))
    if stage in ACKNOWLEDGED:
        assert all(isinstance(outcome, AppendResult) for outcome in outcomes), outcomes
        return
    for outcome in outcomes:
        assert isinstance(outcome, JournalFailed), outcome
        assert isinstance(outcome.__cause__, Injected | MemoryError)
        if stage == "publishing":
            assert isinstance(outcome, JournalFailedAfterSync)
            assert "durable" in str(outcome)
            assert "do not append it again" in str(outcome)
        else:
            assert not isinstance(outcome, JournalFailedAfterSync)
            assert "not acknowledged" in str(outcome)
            assert "unexpected error" in str(outcome)


@pytest.mark.anyio
@pytest.mark.parametrize("failing", ["write", "placement"])
async def test_appends_waiting_for_room_are_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Appends that wait for room in the queue, inside and outside the journal's task group,
    are answered when the committer fails on a write, or on placing one of them."""
    directory = tmp_path / "journal"
    answers: dict[str, AppendResult | BaseException] = {}
    all_answered = anyio.Event()

    async def append(stream_id: str) -> None:
        try:
            answers[stream_id] = await journal.append(
                stream_id, [NewEvent("E", stream_id)], expected_version=0
            )
        except JournalFailed as error:
            answers[stream_id] = error
        if len(answers) == 2 * TASKS:
            all_answered.set()

    io = HeldFileIO()
    journal = FileJournal(directory, batch_bytes_max=1, queue_bytes_max=1, file_io=io)
    async with anyio.create_task_group() as outside, journal:
        # While this append's write is held, the queue is full: every task waits for room.
        release = io.hold = threading.Event()
        held = journal.start_append("z", [NewEvent("E", "z")], expected_version=0)
        assert held is not None
        assert await anyio.to_thread.run_sync(io.held.wait, WAIT_S)
        if failing == "write":
            commit = SegmentWriter.commit

            def failing_commit(self: SegmentWriter, *args: Any) -> Any:
                monkeypatch.setattr(SegmentWriter, "commit", commit)
                raise Injected("injected before the write")

            monkeypatch.setattr(SegmentWriter, "commit", failing_commit)
        else:
            place = CommitQueue.place

            def failing_place(self: CommitQueue, stream_id: str, *args: Any) -> Any:
                if stream_id == "in1":  # Placed by the committer, once there is room.
                    raise Injected("injected while placing")
                return place(self, stream_id, *args)

            monkeypatch.setattr(CommitQueue, "place", failing_place)
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as inside:
                for number in range(TASKS):
                    outside.start_soon(append, f"out{number}")
                    inside.start_soon(append, f"in{number}")
                await anyio.wait_all_tasks_blocked()
                assert journal.start_append("y", [NewEvent("E", 0)], expected_version=0) is None
                release.set()
            await all_answered.wait()
        await held[0]
        held[1].raise_error()
        failed = [answer for answer in answers.values() if isinstance(answer, JournalFailed)]
        assert failed, answers
        assert all(isinstance(answer.__cause__, Injected) for answer in failed)
        acknowledged = {
            name for name, answer in answers.items() if isinstance(answer, AppendResult)
        }
        acknowledged.add("z")
        shown = [event.stream_id async for event in journal.read_all()]
        assert sorted(shown) == sorted(acknowledged)
    assert not (directory / "closed-cleanly").exists()
    assert sorted(event.stream_id for event in await _all_events(directory)) == sorted(shown)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["place", "place_one"])
async def test_an_error_while_an_appends_frames_are_made_refuses_it_and_changes_nothing(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while the records of an append are built (a MemoryError, say) reaches its
    caller; the batch, the versions and the positions are as if it had never been tried."""
    name = "encode_event" if path == "place" else "pack_frame"
    real = getattr(journals._committer, name)
    calls = [0]

    def second_call_fails(*arguments: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise MemoryError("injected")
        return real(*arguments)

    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        await journal.append("a", [NewEvent("T", {"n": 0})], expected_version=0)
        monkeypatch.setattr(journals._committer, name, second_call_fails)
        if path == "place":
            events = [NewEvent("T", {"n": n}) for n in (1, 2, 3)]
            with pytest.raises(MemoryError):
                await journal.append("a", events, expected_version=1)
        else:
            # The first call builds "b"'s frame; the second, for "a", fails.
            started = journal.start_append_columns("b", ["T"], [{"n": 9}], expected_version=0)
            assert started is not None
            await started[0]
            with pytest.raises(MemoryError):
                journal.start_append_columns("a", ["T"], [{"n": 1}], expected_version=1)
        monkeypatch.setattr(journals._committer, name, real)
        await anyio.sleep(0.05)  # The committer's turn: a batch the refusal left would go now.
        # Another stream first: a run left behind by the refused append would claim its event.
        await journal.append("c", [NewEvent("T", {"n": 7})], expected_version=0)
        result = await journal.append("a", [NewEvent("T", {"n": 1})], expected_version=1)
        assert (result.version, result.position) == (2, 4 if path == "place_one" else 3)
        live = [(e.stream_id, e.version, e.data["n"]) async for e in journal.read_all()]
        assert [e.data["n"] async for e in journal.read("c")] == [7]
    async with FileJournal(directory) as journal:
        reopened = [(e.stream_id, e.version, e.data["n"]) async for e in journal.read_all()]
        assert [e.data["n"] async for e in journal.read("c")] == [7]
    expected = [("a", 1, 0)] + ([("b", 1, 9)] if path == "place_one" else [])
    assert live == reopened == [*expected, ("c", 1, 7), ("a", 2, 1)]


@pytest.mark.anyio
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not_durable"])
async def test_failed_after_sync_says_whether_an_fsync_was_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    """A journal opened with durable=False makes no fsync: the answer of a batch written and
    not published must not say that one returned, nor call the append durable."""
    publish = CommitQueue._publish

    def failing_publish(self: CommitQueue, *args: Any) -> None:
        monkeypatch.setattr(CommitQueue, "_publish", publish)
        raise Injected("injected while publishing")

    directory = tmp_path / "journal"
    async with FileJournal(directory, durable=durable) as journal:
        await journal.append("a", [NewEvent("E", 0)], expected_version=0)
        monkeypatch.setattr(CommitQueue, "_publish", failing_publish)
        with anyio.fail_after(WAIT_S), pytest.raises(JournalFailedAfterSync) as failed:
            await journal.append("a", [NewEvent("E", 1)], expected_version=1)
    message = str(failed.value)
    assert "do not append it again" in message
    if durable:
        assert "this append is durable" in message
        assert "its fsync returned" in message
    else:
        assert "durable=False" in message
        assert "durable but" not in message
        assert "fsync returned" not in message
    assert [event.data for event in await _all_events(directory)] == [0, 1]
