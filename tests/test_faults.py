"""Disk faults at random moments, through the fault-injecting file layer (no mocks).

Many tasks append multi-event batches to a FileJournal with small segments (so it rolls and
fsyncs its directory) while ``journals.testing.FaultyFileIO`` makes an fsync fail with EIO,
fills the disk (ENOSPC) in the middle of a write, shortens writes, or "crashes" after a given
byte (the write only partly reaches the file, then every call fails). Hypothesis picks the
fault and the moment. For each run:

* no append is acknowledged after the first failure, and every failure is ``JournalFailed``
  saying why, with the ``OSError`` as its cause;
* after reopening with a healthy file layer the journal verifies, and holds every acknowledged
  append exactly as acknowledged, then at most some whole unacknowledged appends (those whose
  bytes reached the file before the failure), never a part of one.

Short writes alone are not a failure: the journal must loop and acknowledge everything.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journals import (
    AppendResult,
    FileJournal,
    JournalFailed,
    NewEvent,
    verify_journal,
)
from journals.testing import FaultyFileIO

from .examples import examples

TASKS = 6
APPENDS_PER_TASK = 8
SEGMENT_BYTES_MAX = 4096


@dataclass
class Run:
    attempted: dict[tuple[int, int], int] = field(default_factory=dict)  # (task, n) -> count
    acknowledged: dict[tuple[int, int], AppendResult] = field(default_factory=dict)
    failures: list[JournalFailed] = field(default_factory=list)
    # Completion order: True for an acknowledgement, False for a failure.
    completions: list[bool] = field(default_factory=list)


async def _appender(journal: FileJournal, task: int, run: Run) -> None:
    version = 0
    for n in range(APPENDS_PER_TASK):
        count = 1 + (task + n) % 3
        events = [
            NewEvent("Wrote", {"task": task, "n": n, "i": i, "count": count, "pad": "x" * 90})
            for i in range(count)
        ]
        run.attempted[task, n] = count
        try:
            result = await journal.append(f"task-{task}", events, expected_version=version)
        except JournalFailed as error:
            run.failures.append(error)
            run.completions.append(False)
            return
        run.acknowledged[task, n] = result
        run.completions.append(True)
        version = result.version


async def _workload(directory: Path, faults: FaultyFileIO, arm: dict[str, int]) -> Run:
    run = Run()
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=faults) as j:
        # Arm the fault only now, so that opening succeeds; limits count from here.
        for name, value in arm.items():
            base = faults.fsyncs if name == "fail_fsync_after" else faults.bytes_written
            setattr(faults, name, base + value if name != "write_bytes_max" else value)
        async with anyio.create_task_group() as group:
            for task in range(TASKS):
                group.start_soon(_appender, j, task, run)
    return run


async def _reopened(directory: Path) -> list[tuple[int, int, int, int, int, str, int]]:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        return [
            (
                e.data["task"],
                e.data["n"],
                e.data["i"],
                e.data["count"],
                e.position,
                e.stream_id,
                e.version,
            )
            async for e in journal.read_all()
        ]


def check_run(directory: Path, run: Run, expected_errno: int | None) -> None:
    if run.failures:
        first_failure = run.completions.index(False)
        assert all(not ok for ok in run.completions[first_failure:]), "acknowledged after failure"
        for failure in run.failures:
            cause = failure.__cause__
            assert isinstance(cause, OSError), failure
            assert cause.errno == expected_errno, failure
            assert "not acknowledged" in str(failure) or "failed earlier" in str(failure)
    events = anyio.run(_reopened, directory)
    report = verify_journal(directory)
    assert report.intact, report.problem
    assert [e[4] for e in events] == list(range(1, len(events) + 1))
    appends: dict[tuple[int, int], list[tuple[int, int, int, int, int, str, int]]] = {}
    for event in events:
        appends.setdefault((event[0], event[1]), []).append(event)
    last_acknowledged = max((r.position for r in run.acknowledged.values()), default=0)
    for key, found in appends.items():
        assert key in run.attempted, f"append {key} was never attempted"
        count = run.attempted[key]
        first = found[0]
        assert [(e[2], e[3], e[4], e[6]) for e in found] == [
            (i, count, first[4] + i, first[6] + i) for i in range(count)
        ], f"append {key} is not whole"
        result = run.acknowledged.get(key)
        if result is None:
            assert first[4] > last_acknowledged, f"unacknowledged {key} before acknowledged ones"
        else:
            assert (found[-1][6], found[-1][4]) == (result.version, result.position)
    missing = set(run.acknowledged) - set(appends)
    assert not missing, f"acknowledged appends lost: {sorted(missing)}"


_settings = settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_settings
@given(after=st.integers(0, 20))
def test_a_failed_fsync_at_any_moment(tmp_path_factory: pytest.TempPathFactory, after: int) -> None:
    directory = tmp_path_factory.mktemp("fsync") / "journal"
    faults = FaultyFileIO()
    run = anyio.run(_workload, directory, faults, {"fail_fsync_after": after})
    assert run.failures, "the fault was armed within the workload's fsyncs"
    assert faults.fsyncs == faults.fail_fsync_after  # the failed fsync is never retried
    check_run(directory, run, errno.EIO)


@_settings
@given(after_bytes=st.integers(0, 18_000), short=st.none() | st.integers(1, 700))
def test_a_full_disk_in_the_middle_of_a_write(
    tmp_path_factory: pytest.TempPathFactory, after_bytes: int, short: int | None
) -> None:
    directory = tmp_path_factory.mktemp("enospc") / "journal"
    arm = {"enospc_after_bytes": after_bytes}
    if short is not None:
        arm["write_bytes_max"] = short
    run = anyio.run(_workload, directory, FaultyFileIO(), arm)
    assert run.failures, "the disk filled up within the workload's bytes"
    check_run(directory, run, errno.ENOSPC)


@_settings
@given(after_bytes=st.integers(0, 18_000), short=st.none() | st.integers(1, 700))
def test_a_crash_part_way_through_a_write(
    tmp_path_factory: pytest.TempPathFactory, after_bytes: int, short: int | None
) -> None:
    directory = tmp_path_factory.mktemp("crash") / "journal"
    arm = {"crash_after_bytes": after_bytes}
    if short is not None:
        arm["write_bytes_max"] = short
    faults = FaultyFileIO()
    run = anyio.run(_workload, directory, faults, arm)
    assert run.failures
    assert faults.crashed
    check_run(directory, run, errno.EIO)


@pytest.mark.anyio
@pytest.mark.parametrize("write_bytes_max", [1, 7, 100])
async def test_short_writes_alone_lose_and_fail_nothing(
    tmp_path: Path, write_bytes_max: int
) -> None:
    faults = FaultyFileIO(write_bytes_max=write_bytes_max)
    run = await _workload(tmp_path / "journal", faults, {})
    assert run.failures == []
    assert len(run.acknowledged) == TASKS * APPENDS_PER_TASK
    assert faults.write_calls > faults.bytes_written // write_bytes_max - 1
    await anyio.to_thread.run_sync(check_run, tmp_path / "journal", run, None)
