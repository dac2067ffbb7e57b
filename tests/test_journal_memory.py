"""MemoryJournal against the journal contract, plus what only it offers."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from journals import Journal, JournalFailed, MemoryJournal, NewEvent

from .journal_conformance import JournalConformance, collect


class TestMemoryJournalConformance(JournalConformance):
    def make_journal(self, directory: Path) -> Journal:
        return MemoryJournal()


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
