"""The read-only tools scan a journal that may be live: what its writer does meanwhile is not
damage.

A journal saves a snapshot only at a version already durable, and closes cleanly by writing a
record of where it ended. A scan that reads the segments and then, later, the snapshot file or
the record must not take a snapshot or a record written in between for a lost end. The tests
force each interleaving: the writer's work runs right after the scan read a segment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import journals._history
from journals import (
    FileJournal,
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
    read = journals._history.read_file

    def read_then_work(path: str) -> bytes:
        data = read(path)
        if path.endswith(".log"):
            work()
        return data

    monkeypatch.setattr(journals._history, "read_file", read_then_work)


async def _append_and_snapshot(journal: FileJournal) -> None:
    result = await journal.append("s", [NewEvent("T", {"n": 1})], expected_version=None)
    await journal.save_snapshot("s", result.version, {"state": result.version})


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
    assert found == (
        0 if tool == "export_checkpoint" else 1
    )  # The open journal's last batch: left out.
    assert TOOLS[tool](tmp_path) == 2
