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

    @pytest.mark.anyio
    @pytest.mark.parametrize("version", [1.5, 2.0, True, "1", None])
    async def test_a_snapshot_version_that_is_not_a_whole_number_is_refused(
        self, tmp_path: Path, version: object
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0)
            with pytest.raises(ValueError, match=r"a snapshot's version is .* a whole number"):
                await journal.save_snapshot("s", version, {})  # type: ignore[arg-type]
            assert await journal.load_snapshot("s") is None
