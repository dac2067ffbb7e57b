"""A FileJournal before it is opened, after it is closed, with a full queue, and when a
snapshot cannot be written."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import ConcurrencyError, FileJournal, JournalClosed, JournalFailed, NewEvent
from journals.testing import FaultyFileIO
from runtime import Runtime

from .journal_doubles import HeldWrites
from .test_runtime_bank import Account, Deposit, Open, account


@pytest.mark.anyio
async def test_a_journal_not_yet_opened_says_to_open_it(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path)
    with pytest.raises(JournalClosed, match="has not been opened yet; use 'async with'"):
        journal.recovery_report  # noqa: B018 (the property raises)
    with pytest.raises(JournalClosed, match="reads need it open"):
        await journal.stream_version("s")
    with pytest.raises(JournalClosed, match="no more appends are accepted"):
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
    assert journal.statistics().events == 0
    assert [path async for path in anyio.Path(tmp_path).iterdir()] == []  # Nothing created.


@pytest.mark.anyio
async def test_a_close_that_fails_still_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An error closing the last segment (EIO on a network file system, say) used to leave the
    # lock held: every later open in this process was refused with JournalLocked.
    def fails(self: object, *, snapshots_size: int | None) -> None:
        raise OSError(5, "Input/output error (simulated close)")

    journal = FileJournal(tmp_path / "j")
    await journal.__aenter__()
    await journal.append("s", [NewEvent("X", 1)], expected_version=0)
    monkeypatch.setattr("journals._file_writer.SegmentWriter.close", fails)
    with pytest.raises(OSError, match="simulated close"):
        await journal.aclose()
    monkeypatch.undo()
    async with FileJournal(tmp_path / "j") as again:
        assert [event.data async for event in again.read("s")] == [1]


@pytest.mark.anyio
async def test_a_closed_journal_keeps_its_figures_and_is_not_opened_again(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path)
    async with journal:
        await journal.append("s", [NewEvent("X", 1), NewEvent("X", 2)], expected_version=0)
    with pytest.raises(JournalClosed, match="reads need it open"):
        [event async for event in journal.read("s")]
    assert (journal.statistics().events, journal.recovery_report.events) == (2, 0)
    with pytest.raises(JournalClosed, match="was closed; create a new one to reopen"):
        async with journal:
            pass
    async with FileJournal(tmp_path) as again:
        assert [event.data async for event in again.read("s")] == [1, 2]


@pytest.mark.anyio
async def test_a_snapshot_that_cannot_be_written_fails_the_journal(tmp_path: Path) -> None:
    faults = FaultyFileIO()
    async with FileJournal(tmp_path, file_io=faults) as journal:
        await journal.append("s", [NewEvent("X", 1)], expected_version=0)
        faults.fail_fsync_after = faults.fsyncs  # The snapshot's sync fails.
        with pytest.raises(JournalFailed, match="snapshot") as failed:
            await journal.save_snapshot("s", 1, {"total": 1})
        assert isinstance(failed.value.__cause__, OSError)
        with pytest.raises(JournalFailed, match="failed earlier"):
            await journal.append("s", [NewEvent("X", 2)], expected_version=1)
    async with FileJournal(tmp_path) as reopened:
        assert [event.data async for event in reopened.read("s")] == [1]


@pytest.mark.anyio
async def test_appends_that_wait_for_room_keep_their_order(tmp_path: Path) -> None:
    # A queue of one byte: every append placed while one is queued waits for room.
    order: list[int] = []
    async with FileJournal(tmp_path, queue_bytes_max=1, batch_bytes_max=1) as journal:

        async def append(number: int) -> None:
            result = await journal.append("s", [NewEvent("X", number)], expected_version=None)
            order.append(result.position)

        async with anyio.create_task_group() as tg:
            for number in range(50):
                tg.start_soon(append, number)
                await anyio.lowlevel.checkpoint()  # Each append is made in turn.
        assert [event.data async for event in journal.read("s")] == list(range(50))
        assert journal.statistics().batches > 1
    assert sorted(order) == list(range(1, 51))


@pytest.mark.anyio
async def test_an_append_cancelled_while_it_waits_for_room_is_not_written(
    tmp_path: Path,
) -> None:
    writes = HeldWrites()
    async with FileJournal(
        tmp_path, queue_bytes_max=1, batch_bytes_max=1, file_io=writes
    ) as journal:
        append = functools.partial(journal.append, expected_version=None)
        writes.released.clear()
        async with anyio.create_task_group() as tg:
            for number in range(3):
                tg.start_soon(append, "s", [NewEvent("X", number)])
                await anyio.wait_all_tasks_blocked()
            # The first append is being written (held); the others wait for room, in order.
            assert journal.statistics().appends == 0
            with anyio.move_on_after(0.05) as waited:
                await append("s", [NewEvent("X", "cancelled")])
            assert waited.cancelled_caught
            writes.released.set()
        await append("s", [NewEvent("X", "after")])
        found = [event.data async for event in journal.read("s")]
    assert found == [0, 1, 2, "after"]


@pytest.mark.anyio
async def test_the_runtime_goes_on_when_the_journals_queue_is_full(tmp_path: Path) -> None:
    # The runtime places appends without waiting while the queue has room, and queues them for
    # room when it has none (queue_append_columns): no command is lost, reordered or doubled.
    entities = [str(number) for number in range(20)]
    results: dict[str, list[int]] = {entity: [] for entity in entities}
    async with (
        FileJournal(tmp_path, queue_bytes_max=2048, batch_bytes_max=512) as journal,
        Runtime(journal) as runtime,
    ):
        for entity in entities:
            await runtime.ask(account, entity, Open(entity))

        async def deposits(entity: str) -> None:
            for amount in range(1, 11):
                result: Any = await runtime.ask(account, entity, Deposit(amount))
                results[entity].append(result.version)

        async with anyio.create_task_group() as tg:
            for entity in entities:
                for _ in range(3):
                    tg.start_soon(deposits, entity)
        for entity in entities:
            assert sorted(results[entity]) == list(range(2, 32))
            assert await runtime.state(account, entity) == Account(entity, 3 * 55, 30)
        assert journal.statistics().events == 20 * 31


@pytest.mark.anyio
async def test_a_queued_append_is_placed_in_turn_or_withdrawn(tmp_path: Path) -> None:
    writes = HeldWrites()
    async with FileJournal(
        tmp_path, queue_bytes_max=1, batch_bytes_max=1, file_io=writes
    ) as journal:
        # With room, a queued append is placed at once.
        first = journal.queue_append_columns("s", ["X"], [0], expected_version=0)
        await first.wait()
        durable, outcome, version, position = first.started()
        assert (version, position) == (1, 1)
        await durable
        outcome.raise_error()
        writes.released.clear()
        held = journal.start_append_columns("s", ["X"], [1], expected_version=1)
        assert held is not None  # being written (held); the queue has no room now
        assert journal.start_append_columns("s", ["X"], [2], expected_version=2) is None
        withdrawn = journal.queue_append_columns("s", ["X"], ["withdrawn"], expected_version=2)
        kept = journal.queue_append_columns("s", ["X"], [2], expected_version=None)
        refused = journal.queue_append_columns("s", ["X"], [3], expected_version=2)
        assert withdrawn.withdraw()  # still waiting: it leaves the queue
        writes.released.set()
        await held[0]
        await kept.wait()
        assert not kept.withdraw()  # placed: too late to take back
        kept_durable, _, kept_version, kept_position = kept.started()
        assert (kept_version, kept_position) == (3, 3)
        await refused.wait()
        assert refused.withdraw()  # refused when its turn came: never written
        with pytest.raises(ConcurrencyError, match="at version 3, not at the expected version 2"):
            refused.started()
        await kept_durable
        found = [event.data async for event in journal.read("s")]
    assert found == [0, 1, 2]


@pytest.mark.anyio
async def test_a_queued_append_is_checked_before_it_waits_and_fails_with_the_journal(
    tmp_path: Path,
) -> None:
    io = FaultyFileIO()
    async with FileJournal(tmp_path, queue_bytes_max=1, batch_bytes_max=1, file_io=io) as journal:
        with pytest.raises(ValueError, match="expected_version"):
            journal.queue_append_columns("s", ["X"], [1], expected_version=-1)
        with pytest.raises(ValueError, match="as long as"):
            journal.queue_append_columns("s", ["X", "Y"], [1], expected_version=None)
        io.fail_fsync_after = io.fsyncs  # the next sync fails
        placed = journal.start_append_columns("s", ["X"], [1], expected_version=None)
        assert placed is not None
        queued = journal.queue_append_columns("s", ["X"], [2], expected_version=None)
        await placed[0]
        with pytest.raises(JournalFailed):
            placed[1].raise_error()
        await queued.wait()
        with pytest.raises(JournalFailed):
            queued.started()
        assert queued.withdraw()
        with pytest.raises(JournalFailed):
            journal.queue_append_columns("s", ["X"], [3], expected_version=None)


@pytest.mark.anyio
async def test_a_command_cancelled_while_the_journal_has_no_room_is_not_written(
    tmp_path: Path,
) -> None:
    writes = HeldWrites()
    async with (
        FileJournal(tmp_path, queue_bytes_max=1, batch_bytes_max=1, file_io=writes) as journal,
        Runtime(journal) as runtime,
    ):
        await runtime.ask(account, "42", Open("ada"))
        writes.released.clear()
        async with anyio.create_task_group() as tg:
            tg.start_soon(runtime.ask, account, "7", Open("bob"))  # takes the queue's room
            await anyio.wait_all_tasks_blocked()
            with anyio.move_on_after(0.05) as waited:
                await runtime.ask(account, "42", Deposit(10))  # waits for room
            assert waited.cancelled_caught
            writes.released.set()
        with anyio.fail_after(5):
            result: Any = await runtime.ask(account, "42", Deposit(5))
        assert result.version == 2
        assert await runtime.state(account, "42") == Account("ada", 5, 1)
        found = [event.data async for event in journal.read("account-42")]
    assert found == [{"owner": "ada"}, {"amount": 5}]
