"""The runtime on a FileJournal: recovery after reopening, snapshots on disk, a failed fsync."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from journals import FileJournal, JournalFailed
from journals.testing import FaultyFileIO
from runtime import CommandRejected, Runtime

from .test_runtime_bank import Account, Deposit, Open, Withdraw, make_account

snapshotting = make_account(snapshot_every=5)


@pytest.mark.anyio
async def test_entities_recover_from_the_files_after_reopening(tmp_path: Path) -> None:
    entities = [f"e{number}" for number in range(20)]
    async with FileJournal(tmp_path / "journal") as journal, Runtime(journal) as runtime:

        async def work(entity: str) -> None:
            await runtime.ask(snapshotting, entity, Open(entity))
            for amount in range(1, 13):
                await runtime.ask(snapshotting, entity, Deposit(amount))
            with pytest.raises(CommandRejected):
                await runtime.ask(snapshotting, entity, Withdraw(1000))

        async with anyio.create_task_group() as tg:
            for entity in entities:
                tg.start_soon(work, entity)
    assert runtime.statistics().snapshots == 2 * len(entities)
    async with FileJournal(tmp_path / "journal") as journal, Runtime(journal) as runtime:
        for entity in entities:
            assert await runtime.state(snapshotting, entity) == Account(entity, 78, 12)
        snapshot = await journal.load_snapshot("account-e3")
        assert snapshot is not None
        assert snapshot.version == 10
        result = await runtime.ask(snapshotting, "e3", Withdraw(8))
        assert result.version == 14


@pytest.mark.anyio
async def test_a_failed_fsync_fails_the_commands_and_nothing_unacknowledged_survives(
    tmp_path: Path,
) -> None:
    faults = FaultyFileIO()
    failures: list[BaseException] = []
    async with (
        FileJournal(tmp_path / "journal", file_io=faults) as journal,
        Runtime(journal) as runtime,
    ):
        await runtime.ask(snapshotting, "42", Open("ada"))
        await runtime.ask(snapshotting, "42", Deposit(10))
        faults.fail_fsync_after = faults.fsyncs  # the next fsync fails

        async def deposit() -> None:
            try:
                await runtime.ask(snapshotting, "42", Deposit(1))
            except JournalFailed as failure:
                failures.append(failure)

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(deposit)
        assert len(failures) == 50
        # Rebuilt from what is durable, not from the 50 unacknowledged deposits.
        assert await runtime.state(snapshotting, "42") == Account("ada", 10, 1)
    # After reopening, whole unacknowledged appends may be there (written, fsync unconfirmed),
    # never part of one, and every acknowledged one is.
    async with FileJournal(tmp_path / "journal") as journal, Runtime(journal) as runtime:
        state = await runtime.state(snapshotting, "42")
        extra = state.deposits - 1
        assert 0 <= extra <= 50
        assert state == Account("ada", 10 + extra, 1 + extra)
