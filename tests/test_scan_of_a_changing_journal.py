"""The read-only tools scan a journal that may be live: what its writer does meanwhile is not
damage.

A journal saves a snapshot only at a version already durable, and closes cleanly by writing a
record of where it ended. A scan that reads the segments and then, later, the snapshot file or
the record must not take a snapshot or a record written in between for a lost end. The tests
force each interleaving: the writer's work runs right after the scan read a segment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import journals._history
from journals import (
    FileJournal,
    JournalError,
    JournalKeptChanging,
    NewEvent,
    export_checkpoint,
    read_journal_files,
    verify_journal,
)


def _checkpoint_position(directory: Path) -> int:
    return export_checkpoint(directory).position


def _events_read(directory: Path) -> int:
    return len(list(read_journal_files(directory)))


def _events_verified(directory: Path) -> int:
    report = verify_journal(directory)
    assert report.problem is None, report.problem
    return report.events


TOOLS: dict[str, Callable[[Path], int]] = {
    "export_checkpoint": _checkpoint_position,
    "read_journal_files": _events_read,
    "verify_journal": _events_verified,
}


def _before_each_segment_read(monkeypatch: pytest.MonkeyPatch, work: Callable[[], None]) -> None:
    """Run ``work`` each time the scan has read a segment file, before it goes on."""
    read = journals._history.read_segment_file

    def read_then_work(path: str) -> bytes:
        data = read(path)
        if path.endswith(".log"):
            work()
        return data

    monkeypatch.setattr(journals._history, "read_segment_file", read_then_work)


async def _append_and_snapshot(journal: FileJournal) -> None:
    result = await journal.append("s", [NewEvent("T", {"n": 1})], expected_version=None)
    await journal.save_snapshot("s", result.version, {"state": result.version})


def _session(directory: Path) -> None:
    """Open the journal, append, save a snapshot at the new version, close cleanly."""

    async def session() -> None:
        async with FileJournal(directory) as journal:
            await _append_and_snapshot(journal)

    anyio.run(session)


@pytest.mark.anyio
@pytest.mark.parametrize("tool", TOOLS)
async def test_a_snapshot_saved_while_the_segments_are_read_is_not_a_lost_end(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path) as journal:
        await _append_and_snapshot(journal)
        done: list[bool] = []

        def live_work() -> None:
            if not done:
                done.append(True)
                anyio.from_thread.run(_append_and_snapshot, journal)

        _before_each_segment_read(monkeypatch, live_work)
        found = await anyio.to_thread.run_sync(TOOLS[tool], tmp_path)
        assert done
    # Of the open journal, the checkpoint and the listing leave out the last batch, which may
    # be in flight; verify, which looks for damage, reads it.
    assert found == (1 if tool == "verify_journal" else 0)
    assert TOOLS[tool](tmp_path) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("tool", TOOLS)
async def test_a_clean_close_while_the_segments_are_read_makes_the_scan_start_over(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached = anyio.Event()
    closed = threading.Event()
    done: list[bool] = []

    def wait_for_the_close() -> None:
        if not done:
            done.append(True)
            anyio.from_thread.run_sync(reached.set)
            closed.wait()

    _before_each_segment_read(monkeypatch, wait_for_the_close)
    found: list[int] = []

    async def scan() -> None:
        found.append(await anyio.to_thread.run_sync(TOOLS[tool], tmp_path))

    async with anyio.create_task_group() as task_group:
        try:
            async with FileJournal(tmp_path) as journal:
                await _append_and_snapshot(journal)
                task_group.start_soon(scan)
                await reached.wait()
                await _append_and_snapshot(journal)
        finally:
            closed.set()  # The journal closed cleanly after the scan read its segment.
    assert (tmp_path / "closed-cleanly").exists()
    assert found == [2]  # Scanned again, and held to the record the close left.


@pytest.mark.parametrize("tool", TOOLS)
def test_a_journal_reopened_and_closed_while_the_segments_are_read_is_scanned_again(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _session(tmp_path)
    done: list[bool] = []

    def reopen() -> None:
        if not done:
            done.append(True)
            _session(tmp_path)

    _before_each_segment_read(monkeypatch, reopen)
    assert TOOLS[tool](tmp_path) == 2


@pytest.mark.parametrize("tool", TOOLS)
def test_a_journal_that_keeps_changing_during_every_scan_is_refused_as_such(
    tmp_path: Path, tool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _session(tmp_path)
    _before_each_segment_read(monkeypatch, lambda: _session(tmp_path))
    with pytest.raises(JournalKeptChanging, match="kept changing") as refused:
        TOOLS[tool](tmp_path)
    assert isinstance(refused.value, JournalError)  # Reported by the commands as one line.
    monkeypatch.undo()
    assert TOOLS[tool](tmp_path) == 1 + journals._history.SCAN_ATTEMPTS


def test_events_read_before_the_scan_started_over_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The segments already read were sealed: their events were yielded once and stay so.
    async def write() -> None:
        async with FileJournal(tmp_path, segment_bytes_max=4096) as journal:
            for n in range(40):
                event = NewEvent("T", {"n": n, "pad": "p" * 300})
                await journal.append("s", [event], expected_version=n)

    anyio.run(write)
    assert len(list(tmp_path.glob("*.log"))) >= 3
    reads: list[None] = []

    def reopen_at_the_third_segment() -> None:
        reads.append(None)
        if len(reads) == 3:
            _session(tmp_path)

    _before_each_segment_read(monkeypatch, reopen_at_the_third_segment)
    positions = [event.position for event in read_journal_files(tmp_path)]
    assert len(reads) > 3  # The scan started over.
    assert positions == list(range(1, 42))
