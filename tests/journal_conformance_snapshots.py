"""The journal contract's snapshot rules, part of the suite run against every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio: every backend refuses the same snapshots, with the same errors, before writing anything.
"""

from __future__ import annotations

import abc
from pathlib import Path

import anyio
import pytest

from journals import Journal, NewEvent


class SnapshotConformance(abc.ABC):
    @abc.abstractmethod
    def make_journal(self, directory: Path) -> Journal:
        """A new, not yet opened journal kept in ``directory`` (ignored by memory backends)."""

    @pytest.mark.anyio
    async def test_a_save_cancelled_before_it_began_holds_up_no_later_save(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await journal.save_snapshot("s", 1, {"first": True})
            assert scope.cancelled_caught
            with anyio.fail_after(10):  # A bound for a hang, not a speed requirement.
                await journal.save_snapshot("s", 1, {"second": True})
                await journal.save_snapshot("s", 1, {"third": True})
            snapshot = await journal.load_snapshot("s")
            assert snapshot is not None
            assert snapshot.data == {"third": True}
