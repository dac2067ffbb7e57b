"""Fail-stop: write and fsync failures, injected through journals.testing.FaultyFileIO."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import anyio
import pytest

from journals import (
    AppendResult,
    FileJournal,
    JournalFailed,
    NewEvent,
    RecordedEvent,
    verify_journal,
)
from journals.testing import FaultyFileIO


async def _attempt(
    journal: FileJournal, index: int, outcomes: dict[int, AppendResult | BaseException]
) -> None:
    try:
        outcomes[index] = await journal.append(
            f"s{index % 5}", [NewEvent("E", {"i": index, "pad": "z" * 50})], expected_version=None
        )
    except JournalFailed as error:
        outcomes[index] = error


async def _reopened(directory: Path) -> tuple[list[RecordedEvent], FileJournal]:
    async with FileJournal(directory) as journal:
        return [event async for event in journal.read_all()], journal


def _acknowledged(outcomes: dict[int, AppendResult | BaseException]) -> set[int]:
    return {index for index, outcome in outcomes.items() if isinstance(outcome, AppendResult)}


@pytest.mark.anyio
async def test_a_failing_fsync_fails_pending_and_later_appends(tmp_path: Path) -> None:
    faults = FaultyFileIO()
    directory = tmp_path / "journal"
    outcomes: dict[int, AppendResult | BaseException] = {}
    async with FileJournal(directory, file_io=faults) as journal:
        await _attempt(journal, 0, outcomes)
        faults.fail_fsync_after = faults.fsyncs  # The next fsync fails.
        async with anyio.create_task_group() as group:
            for index in range(1, 21):
                group.start_soon(_attempt, journal, index, outcomes)
        assert _acknowledged(outcomes) == {0}
        failures = [outcomes[index] for index in range(1, 21)]
        assert all(isinstance(error, JournalFailed) for error in failures)
        assert isinstance(failures[0], JournalFailed)
        cause = failures[0].__cause__
        assert isinstance(cause, OSError)
        assert cause.errno == errno.EIO
        assert "fsync" in str(failures[0])
        assert "not acknowledged" in str(failures[0])
        with pytest.raises(JournalFailed, match="failed earlier"):
            await journal.append("s0", [NewEvent("E", "later")], expected_version=None)
        with pytest.raises(JournalFailed, match="failed earlier"):
            journal.start_append("s0", [NewEvent("E", "later")], expected_version=None)
        with pytest.raises(JournalFailed):
            await journal.save_snapshot("s0", 1, {})
        assert faults.fsyncs == faults.fail_fsync_after  # Never retried.
    events, _ = await _reopened(directory)
    assert events[0].data["i"] == 0


@pytest.mark.anyio
async def test_a_failing_fsync_fails_started_appends_when_their_wait_ends(
    tmp_path: Path,
) -> None:
    faults = FaultyFileIO()
    async with FileJournal(tmp_path / "journal", file_io=faults) as journal:
        faults.fail_fsync_after = faults.fsyncs
        started = [
            journal.start_append(f"s{index}", [NewEvent("E", index)], expected_version=0)
            for index in range(5)
        ]
        for placed in started:
            assert placed is not None
            durable, outcome, _, _ = placed
            await durable
            with pytest.raises(JournalFailed, match="not acknowledged"):
                outcome.raise_error()
        assert journal.statistics().appends == 0


@pytest.mark.anyio
async def test_enospc_in_the_middle_of_a_batch_leaves_a_recoverable_prefix(
    tmp_path: Path,
) -> None:
    faults = FaultyFileIO()
    directory = tmp_path / "journal"
    outcomes: dict[int, AppendResult | BaseException] = {}
    async with FileJournal(directory, file_io=faults) as journal:
        for index in range(3):
            await _attempt(journal, index, outcomes)
        faults.enospc_after_bytes = faults.bytes_written + 500
        async with anyio.create_task_group() as group:
            for index in range(3, 30):
                group.start_soon(_attempt, journal, index, outcomes)
        failed = [o for o in outcomes.values() if isinstance(o, JournalFailed)]
        assert len(failed) == 27
        assert "No space left" in str(failed[0])
        assert isinstance(failed[0].__cause__, OSError)
        assert failed[0].__cause__.errno == errno.ENOSPC
    assert _acknowledged(outcomes) == {0, 1, 2}
    report = verify_journal(directory)
    assert report.intact  # The half-written batch is a torn tail: no damage.
    [torn] = report.torn_tails
    assert "torn tail of 500 bytes" in torn.reason
    events, journal = await _reopened(directory)
    assert [e.data["i"] for e in events] == [0, 1, 2]
    (tail,) = journal.recovery_report.torn_tails
    assert tail.bytes_cut == 500
    assert verify_journal(directory).intact


@pytest.mark.anyio
async def test_short_writes_are_completed(tmp_path: Path) -> None:
    faults = FaultyFileIO(write_bytes_max=7)
    directory = tmp_path / "journal"
    outcomes: dict[int, AppendResult | BaseException] = {}
    async with FileJournal(directory, file_io=faults, segment_bytes_max=4096) as journal:
        async with anyio.create_task_group() as group:
            for index in range(100):
                group.start_soon(_attempt, journal, index, outcomes)
        batches = journal.statistics().batches
    assert _acknowledged(outcomes) == set(range(100))
    assert faults.write_calls > 10 * batches
    events, _ = await _reopened(directory)
    assert sorted(e.data["i"] for e in events) == list(range(100))
    assert verify_journal(directory).intact


@pytest.mark.anyio
async def test_a_crash_mid_write_keeps_every_acknowledged_append(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    acknowledged: set[int] = set()
    for crash_at in (400, 999, 2_345):
        faults = FaultyFileIO()
        outcomes: dict[int, AppendResult | BaseException] = {}
        async with FileJournal(directory, file_io=faults) as journal:
            faults.crash_after_bytes = faults.bytes_written + crash_at
            start = await journal.head_position()
            for index in range(start, start + 100):
                await _attempt(journal, index, outcomes)
        this_round = _acknowledged(outcomes)
        assert this_round
        assert len(this_round) < 100
        acknowledged |= this_round
        events, journal = await _reopened(directory)
        # Every acknowledged append is there, and nothing but them: the crash cut the batch
        # in flight, which recovery removed as a torn tail.
        assert [e.data["i"] for e in events] == sorted(acknowledged)
        assert len(journal.recovery_report.torn_tails) == 1
        assert await anyio.to_thread.run_sync(lambda: verify_journal(directory).intact)


@pytest.mark.anyio
async def test_a_failing_fsync_is_logged_once_with_the_directory_and_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = FaultyFileIO()
    directory = tmp_path / "journal"
    outcomes: dict[int, AppendResult | BaseException] = {}
    async with FileJournal(directory, file_io=faults) as journal:
        await _attempt(journal, 0, outcomes)
        faults.fail_fsync_after = faults.fsyncs  # The next fsync fails.
        async with anyio.create_task_group() as group:
            for index in range(1, 21):
                group.start_soon(_attempt, journal, index, outcomes)
        for index in range(21, 41):
            await _attempt(journal, index, outcomes)
    [record] = [r for r in caplog.records if r.name == "journals.file"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert message.startswith(f"journal write failed in {directory} (OSError(5, ")
    assert "every later one fail with JournalFailed" in message
    assert "then reopen the journal: it recovers its durable prefix" in message


@pytest.mark.anyio
async def test_a_failing_snapshot_write_is_logged_once_as_the_journals_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # It fails the journal as a failed append's fsync does, and is logged as one is: an
    # operator whose appends all fail from now on must find why in the journal's log.
    faults = FaultyFileIO()
    directory = tmp_path / "journal"
    outcomes: dict[int, AppendResult | BaseException] = {}
    async with FileJournal(directory, file_io=faults) as journal:
        await _attempt(journal, 0, outcomes)
        faults.fail_fsync_after = faults.fsyncs  # The next fsync fails: the snapshot's.
        with pytest.raises(JournalFailed, match="writing a snapshot failed"):
            await journal.save_snapshot("s0", 1, {"state": 1})
        for index in range(1, 11):
            await _attempt(journal, index, outcomes)
        assert _acknowledged(outcomes) == {0}
    [record] = [r for r in caplog.records if r.name == "journals.file"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert message.startswith(f"the journal in {directory} failed (fail-stop): writing a snapshot")
    assert "Reopen it to recover the durable prefix once the cause is fixed" in message
