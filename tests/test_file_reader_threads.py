"""Where the FileJournal's reads run: short reads from the page cache on the event loop's
thread, the rest in reader threads, and how those threads stop and drop reads given up."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import journals._file_journal as file_journal
from journals import FileJournal, JournalClosed, NewEvent
from journals._file_reader import CACHED_READS
from journals._file_thread import ReaderThreads


async def _count_thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    run = ReaderThreads.run

    async def counted(self: ReaderThreads, function: Any, *args: Any) -> Any:
        calls.append(1)
        return await run(self, function, *args)

    monkeypatch.setattr(ReaderThreads, "run", counted)
    return calls


@pytest.mark.anyio
@pytest.mark.skipif(not CACHED_READS, reason="RWF_NOWAIT reads are a Linux feature")
async def test_short_cached_reads_run_inline_and_fall_back_to_a_thread_when_they_would_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path / "journal") as journal:
        new = [NewEvent("Counted", {"i": index}) for index in range(300)]
        await journal.append("short", new[:20], expected_version=0)
        await journal.append("long", new, expected_version=0)
        calls = await _count_thread_reads(monkeypatch)
        short = [event async for event in journal.read("short")]
        assert calls == []  # From the page cache, on the loop's thread.
        long = [event async for event in journal.read("long")]
        assert calls == [1]  # Over CACHED_READ_EVENTS: a reader thread.

        def would_block(*args: Any) -> int:
            raise BlockingIOError(errno.EAGAIN, "not cached")

        monkeypatch.setattr(os, "preadv", would_block)
        assert [event async for event in journal.read("short")] == short
        assert calls == [1, 1]  # Not in the cache: the same read, from a reader thread.

        def unsupported(*args: Any) -> int:
            raise OSError(errno.EOPNOTSUPP, "not supported here")

        monkeypatch.setattr(os, "preadv", unsupported)
        assert [event async for event in journal.read("short")] == short
        assert calls == [1, 1, 1]
        monkeypatch.undo()
        calls = await _count_thread_reads(monkeypatch)
        assert [event async for event in journal.read("short")] == short
        assert calls == [1]  # Not offered here: reads go to the threads from then on.
        assert [event.data["i"] for event in long] == list(range(300))


@pytest.mark.anyio
@pytest.mark.skipif(not CACHED_READS, reason="RWF_NOWAIT reads are a Linux feature")
async def test_short_reads_go_to_a_thread_where_there_is_no_preadv2_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """musl's preadv2 passes the kernel's ENOSYS on (as do sandboxes that filter system
    calls): the writer fell back to write and fdatasync there, but every short read raised."""
    async with FileJournal(tmp_path / "journal") as journal:
        await journal.append("short", [NewEvent("Counted", {"i": 1})], expected_version=0)
        calls = await _count_thread_reads(monkeypatch)

        def no_system_call(*args: Any) -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(os, "preadv", no_system_call)
        for _ in range(2):
            assert [event.data async for event in journal.read("short")] == [{"i": 1}]
        assert calls == [1, 1]  # From then on the reads go to the threads.


@pytest.mark.anyio
@pytest.mark.skipif(not CACHED_READS, reason="RWF_NOWAIT reads are a Linux feature")
async def test_a_cached_read_given_part_of_its_bytes_reads_them_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RWF_NOWAIT reads what the page cache holds and stops there: the rest of the buffer is
    no record, so the read goes to a reader thread."""
    async with FileJournal(tmp_path / "journal") as journal:
        new = [NewEvent("Counted", {"i": index}) for index in range(5)]
        await journal.append("short", new, expected_version=0)
        calls = await _count_thread_reads(monkeypatch)
        preadv = os.preadv

        def partly(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
            (buffer,) = buffers
            return preadv(fd, [memoryview(buffer)[: len(buffer) // 2]], offset, flags)

        monkeypatch.setattr(os, "preadv", partly)
        assert [event.data["i"] async for event in journal.read("short")] == list(range(5))
        assert calls == [1]


@pytest.mark.anyio
@pytest.mark.skipif(not CACHED_READS, reason="RWF_NOWAIT reads are a Linux feature")
async def test_an_io_error_of_a_cached_read_is_raised_not_taken_for_no_support(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the errors that say RWF_NOWAIT is not offered turn cached reads off."""
    async with FileJournal(tmp_path / "journal") as journal:
        await journal.append("short", [NewEvent("Counted", {"i": 1})], expected_version=0)

        def failing(*args: Any) -> int:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "preadv", failing)
        with pytest.raises(OSError, match="Input/output error") as caught:
            [event async for event in journal.read("short")]
        assert caught.value.errno == errno.EIO
        monkeypatch.undo()
        calls = await _count_thread_reads(monkeypatch)
        assert [event.data async for event in journal.read("short")] == [{"i": 1}]
        assert calls == []  # Still from the page cache, on the loop's thread.


@pytest.mark.anyio
async def test_reader_threads_hand_back_results_and_errors_and_refuse_after_stop() -> None:
    readers = ReaderThreads(2)
    try:
        assert await readers.run(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await readers.run(divmod, 1, 0)
        async with anyio.create_task_group() as group:
            results: list[int] = []

            async def read(value: int) -> None:
                results.append(await readers.run(abs, -value))

            for value in range(20):
                group.start_soon(read, value)
        assert sorted(results) == list(range(20))
    finally:
        await readers.stop()
    with pytest.raises(JournalClosed, match="closed during the read"):
        await readers.run(abs, -1)


def _blocked_read() -> tuple[threading.Event, threading.Event, list[str], Any]:
    """A read for a reader thread that sets ``entered``, waits for ``release``, then notes in
    ``order`` that it returned: (entered, release, order, read)."""
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def blocked_read() -> str:
        entered.set()
        release.wait(10)
        order.append("read returned")
        return "columns"

    return entered, release, order, blocked_read


@pytest.mark.anyio
async def test_reader_threads_stop_only_once_the_calls_handed_over_have_returned() -> None:
    # The journal closes its files after stop: a read still running in a thread would read
    # a closed descriptor, or one that another file has been given meanwhile.
    readers = ReaderThreads(2)
    entered, release, order, blocked_read = _blocked_read()

    async def read() -> None:
        assert await readers.run(blocked_read) == "columns"

    async def stop() -> None:
        await readers.stop()
        order.append("stopped")

    async with anyio.create_task_group() as group:
        group.start_soon(read)
        await anyio.to_thread.run_sync(entered.wait, 10)
        group.start_soon(stop)
        await anyio.sleep(0.05)  # time enough for a stop that does not wait to return
        release.set()
    assert order == ["read returned", "stopped"]


@pytest.mark.anyio
async def test_a_caller_cancelled_during_its_read_stops_waiting_and_stop_waits_for_the_read() -> (
    None
):
    """On trio a cancelled caller used to wait for its read, and then returned its result
    without the cancellation: a read slower than its caller's deadline raised no timeout."""
    readers = ReaderThreads(2)
    entered, release, order, blocked_read = _blocked_read()

    async def stop() -> None:
        await readers.stop()
        order.append("stopped")

    try:
        with pytest.raises(TimeoutError), anyio.fail_after(0.1):
            await readers.run(blocked_read)
        assert entered.is_set()
        assert order == []  # The caller left while its read ran.
        async with anyio.create_task_group() as group:
            group.start_soon(stop)
            await anyio.sleep(0.05)  # time enough for a stop that does not wait to return
            release.set()
        assert order == ["read returned", "stopped"]
    finally:
        release.set()
        await readers.stop()


@pytest.mark.anyio
async def test_a_read_whose_caller_gave_up_before_it_began_is_not_run() -> None:
    """A cancelled caller stops waiting at once, and its read used to run all the same:
    reads given up during a slow disk (timeouts) piled up ahead of every later read."""
    readers = ReaderThreads(2)
    entered, release = threading.Semaphore(0), threading.Event()
    ran: list[int] = []

    def read(number: int) -> int:
        if number < 2:  # The two threads' first reads: held until the others were given up.
            entered.release()
            release.wait(10)
        ran.append(number)
        return number

    try:
        async with anyio.create_task_group() as group:
            for number in (0, 1):
                group.start_soon(readers.run, read, number)
            for _ in (0, 1):
                await anyio.to_thread.run_sync(entered.acquire, True, 10)
            for number in range(2, 12):
                with anyio.move_on_after(0):
                    await readers.run(read, number)
            release.set()
        assert await readers.run(read, 12) == 12
        assert sorted(ran) == [0, 1, 12]
    finally:
        await readers.stop()


@pytest.mark.anyio
@pytest.mark.skipif(not CACHED_READS, reason="RWF_NOWAIT reads are a Linux feature")
async def test_cached_reads_yield_to_other_tasks_once_per_budget_of_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FileJournal(tmp_path / "journal") as journal:
        for number in range(40):
            new = [NewEvent("Counted", {"i": index}) for index in range(20)]
            await journal.append(f"s-{number}", new, expected_version=0)
        calls = await _count_thread_reads(monkeypatch)

        async def ticks_while_reading() -> int:
            ticks = 0
            reading = True

            async def ticker() -> None:
                nonlocal ticks
                while reading:
                    ticks += 1
                    await anyio.lowlevel.checkpoint()

            async with anyio.create_task_group() as group:
                group.start_soon(ticker)
                await anyio.lowlevel.checkpoint()  # The ticker is under way.
                ticks = 0
                for number in range(40):
                    assert len([event async for event in journal.read(f"s-{number}")]) == 20
                reading = False
            return ticks

        few = await ticks_while_reading()  # 40 reads of ~2 KiB: yields once per 64 KiB.
        monkeypatch.setattr(file_journal, "CACHED_READ_BYTES", 1)
        every = await ticks_while_reading()  # Each read is over the budget: yields each time.
        assert calls == []
        assert few <= 3
        assert every >= 39
