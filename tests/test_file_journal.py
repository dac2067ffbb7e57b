"""FileJournal beyond the shared contract: reopening, segments, index files, locking, files."""

from __future__ import annotations

import math
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import (
    ConcurrencyError,
    EventEncodingError,
    FileJournal,
    JournalCorrupted,
    JournalLocked,
    NewEvent,
    StartedAppend,
    verify_journal,
)
from journals._validation import journal_sizes

from .journal_files import without_clean_close


async def _fill(journal: FileJournal, count: int, streams: int = 3) -> None:
    for index in range(count):
        await journal.append(
            f"stream-{index % streams}",
            [NewEvent("Counted", {"index": index, "pad": "x" * 40})],
            expected_version=None,
        )


@pytest.mark.anyio
async def test_reopen_keeps_events_versions_snapshots_and_head(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        await journal.append(
            "a", [NewEvent("X", 1, {"m": "ü"}), NewEvent("Y", [2])], expected_version=0
        )
        await journal.append("流-b", [NewEvent("X", {"k": None})], expected_version=0)
        await journal.save_snapshot("a", 2, {"sum": 3}, {"schema": 1})
        before = [e async for e in journal.read_all()]
    async with FileJournal(directory) as journal:
        after = [e async for e in journal.read_all()]
        assert after == before
        assert await journal.stream_version("a") == 2
        assert await journal.stream_version("流-b") == 1
        assert await journal.head_position() == 3
        snapshot = await journal.load_snapshot("a")
        assert snapshot is not None
        assert (snapshot.version, snapshot.data, dict(snapshot.metadata)) == (
            2,
            {"sum": 3},
            {"schema": 1},
        )
        result = await journal.append("a", [NewEvent("Z", 3)], expected_version=2)
        assert (result.version, result.position) == (3, 4)
        assert journal.recovery_report.torn_tails == ()


@pytest.mark.anyio
async def test_snapshots_saved_out_of_version_order_reopen_in_version_order(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", [NewEvent("X", n) for n in range(10)], expected_version=0)
        for version in (8, 3, 5, 9, 1):  # In the file in this order.
            await journal.save_snapshot("s", version, {"at": version})
    async with FileJournal(tmp_path) as journal:
        found = []
        for at_most in (None, 8, 7, 4, 2):
            snapshot = await journal.load_snapshot("s", max_version=at_most)
            assert snapshot is not None
            found.append((snapshot.version, snapshot.data["at"]))
        assert found == [(9, 9), (8, 8), (5, 5), (3, 3), (1, 1)]


@pytest.mark.anyio
async def test_segments_roll_and_sealed_segments_reopen_from_their_index(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        await _fill(journal, 300)
    logs = sorted(directory.glob("*.log"))
    indexes = sorted(directory.glob("*.idx"))
    assert len(logs) >= 5
    assert [p.stem for p in indexes] == [p.stem for p in logs[:-1]]
    assert logs[0].name == "00000000000000000001.log"
    assert all(p.stat().st_size <= 4096 for p in logs)
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        assert journal.recovery_report.rebuilt_indexes == ()
        assert journal.recovery_report.segments == len(logs)
        events = [e async for e in journal.read("stream-1")]
        assert [e.data["index"] for e in events] == list(range(1, 300, 3))
        assert [e.version for e in events] == list(range(1, 101))
        everything = [e.position async for e in journal.read_all(from_position=37)]
        assert everything == list(range(37, 301))
        await _fill(journal, 30)
        assert await journal.head_position() == 330
    report = verify_journal(directory)
    assert (report.intact, report.events, report.streams) == (True, 330, 3)


@pytest.mark.anyio
async def test_a_missing_or_damaged_index_file_is_rebuilt(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        await _fill(journal, 120)
    indexes = sorted(directory.glob("*.idx"))
    indexes[0].unlink()
    raw = bytearray(indexes[1].read_bytes())
    raw[80] ^= 0xFF
    indexes[1].write_bytes(bytes(raw))
    async with FileJournal(directory) as journal:
        rebuilt = journal.recovery_report.rebuilt_indexes
        assert sorted(rebuilt) == sorted(str(p.with_suffix(".log")) for p in indexes[:2])
        assert [e.data["index"] async for e in journal.read("stream-0")] == list(range(0, 120, 3))
    assert indexes[0].exists()
    assert verify_journal(directory).notes == ()


@pytest.mark.anyio
async def test_a_flipped_bit_in_a_sealed_segment_is_refused_on_open_and_by_verify(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        await _fill(journal, 120)
    first = directory / "00000000000000000001.log"
    raw = bytearray(first.read_bytes())
    raw[64 + 50] ^= 0x01  # Inside the first event record.
    first.write_bytes(bytes(raw))
    problem = verify_journal(directory).problem
    assert problem is not None
    assert (problem.path, problem.offset) == (str(first), 64)
    # Its index file is intact, but opening recomputes the chain of sealed segments too.
    with pytest.raises(JournalCorrupted, match="checksum") as caught:
        async with FileJournal(directory):
            pass
    assert (caught.value.path, caught.value.offset) == (str(first), 64)


@pytest.mark.anyio
async def test_reads_check_each_record_again(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        await _fill(journal, 10)
        segment = directory / "00000000000000000001.log"
        raw = bytearray(segment.read_bytes())
        raw[64 + 50] ^= 0x01  # Damage behind the open journal's back.
        segment.write_bytes(bytes(raw))
        with pytest.raises(JournalCorrupted, match="checksum") as caught:
            _ = [e async for e in journal.read("stream-0")]
        assert (caught.value.path, caught.value.offset) == (str(segment), 64)


@pytest.mark.anyio
async def test_a_second_opener_is_refused(tmp_path: Path) -> None:
    async with FileJournal(tmp_path / "journal"):
        with pytest.raises(JournalLocked, match="already open in this process"):
            async with FileJournal(tmp_path / "journal"):
                pass
    async with FileJournal(tmp_path / "journal"):  # Released on close.
        pass


def test_an_opener_in_another_process_is_named_as_such(tmp_path: Path) -> None:
    async def open_and_close() -> None:
        async with FileJournal(tmp_path / "journal"):
            pass

    anyio.run(open_and_close)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
            "os.pwrite(fd, str(os.getpid()).encode(), 0); print('held', flush=True); "
            "sys.stdin.read()",
            str(tmp_path / "journal" / "lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(JournalLocked, match="open in another process"):
            anyio.run(open_and_close)
    finally:
        holder.communicate("")


@pytest.mark.anyio
async def test_files_are_private_to_the_owner(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory, segment_bytes_max=4096) as journal:
        await _fill(journal, 60)
        await journal.save_snapshot("stream-0", 1, {})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert {p.suffix for p in files} >= {".log", ".idx", ".dat", ""}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


@pytest.mark.anyio
async def test_statistics_report_batches_fsyncs_and_a_compact_index(tmp_path: Path) -> None:
    async with FileJournal(tmp_path / "journal") as journal:
        async with anyio.create_task_group() as group:
            for _task in range(50):
                group.start_soon(_fill, journal, 20, 50)
        stats = journal.statistics()
    assert (stats.events, stats.appends, stats.appended_events) == (1000, 1000, 1000)
    assert stats.batches < 1000  # Concurrent appends shared batches.
    assert stats.fsyncs == stats.batch_fsyncs == stats.batches
    assert stats.events_per_fsync == 1000 / stats.batches
    assert stats.bytes_written > 1000 * 60
    assert 0 < stats.index_bytes_per_event <= 32


@pytest.mark.anyio
async def test_events_per_fsync_counts_the_fsyncs_of_batches_not_of_snapshots_or_rolls(
    tmp_path: Path,
) -> None:
    async with FileJournal(tmp_path / "journal", segment_bytes_max=4096) as journal:
        await _fill(journal, 100)  # One event per batch, over several segments.
        for version in (1, 2, 3):
            await journal.save_snapshot("stream-0", version, {"at": version})
        stats = journal.statistics()
    assert len(list((tmp_path / "journal").glob("*.log"))) > 1, "the segments rolled"
    assert stats.batches == stats.batch_fsyncs == 100
    # Every roll syncs an index file, a new segment and the directory; every snapshot its file.
    assert stats.fsyncs > stats.batch_fsyncs + 3
    assert stats.events_per_fsync == 1.0
    async with FileJournal(tmp_path / "not-durable", durable=False) as journal:
        await _fill(journal, 5)
        stats = journal.statistics()
    assert (stats.batches, stats.batch_fsyncs, stats.fsyncs, stats.events_per_fsync) == (
        5,
        0,
        0,
        0.0,
    )


@pytest.mark.anyio
async def test_a_full_queue_makes_appends_wait_and_keeps_their_order(tmp_path: Path) -> None:
    called: list[int] = []

    async def append(journal: FileJournal, index: int) -> None:
        # Nothing yields between noting the call and append's synchronous part.
        called.append(index)
        await journal.append(
            "pipe", [NewEvent("N", {"i": index, "pad": "p" * 30})], expected_version=None
        )

    async with FileJournal(
        tmp_path / "journal", batch_bytes_max=512, queue_bytes_max=1024
    ) as journal:
        async with anyio.create_task_group() as group:
            for index in range(200):
                group.start_soon(append, journal, index)
        assert [e.data["i"] async for e in journal.read("pipe")] == called
        assert sorted(called) == list(range(200))
        assert journal.statistics().batches >= 200 * 60 // 1024


@pytest.mark.anyio
async def test_not_durable_mode_skips_fsync(tmp_path: Path) -> None:
    async with FileJournal(tmp_path / "journal", durable=False) as journal:
        await _fill(journal, 10)
        assert journal.statistics().fsyncs == 0
    async with FileJournal(tmp_path / "journal") as journal:
        assert await journal.head_position() == 10


@pytest.mark.anyio
async def test_both_commit_threads_commit(tmp_path: Path) -> None:
    for kind in ("dedicated", "pool"):
        async with FileJournal(tmp_path / kind, commit_thread=kind) as journal:
            await _fill(journal, 5)
            assert journal.statistics().fsyncs == 5


def test_bad_options_are_refused(tmp_path: Path) -> None:
    segment_sizes = "segment_bytes_max must be a whole number of 4,096 to 2,147,483,648"
    for size in (10, 2**32, 8192.5, math.inf):
        with pytest.raises(ValueError, match=segment_sizes):
            FileJournal(tmp_path, segment_bytes_max=size)  # type: ignore[arg-type]
    FileJournal(tmp_path, segment_bytes_max=2**31)  # The largest: offsets stay 32-bit.
    for option in ("batch_bytes_max", "queue_bytes_max"):
        for value in (0, math.inf, None, True):
            with pytest.raises(ValueError, match=f"{option} must be a whole number of at least 1"):
                FileJournal(tmp_path, **{option: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        FileJournal(tmp_path, key=b"k" * 65)
    FileJournal(tmp_path, key=b"k" * 64)  # The longest key BLAKE2b takes.
    with pytest.raises(ValueError, match="commit_thread"):
        FileJournal(tmp_path, commit_thread="fast")  # type: ignore[arg-type]


def test_a_batch_is_at_most_a_segment_and_the_queue_holds_at_least_a_batch() -> None:
    # A batch larger than a segment would break the bound on a segment's offsets; a queue
    # smaller than a batch would never let one fill.
    assert journal_sizes(4096, 10**9, 1) == (4096, 4096, 4096)
    assert journal_sizes(8192, 100, 50) == (8192, 100, 100)
    assert journal_sizes(8192, 100, 500) == (8192, 100, 500)


@pytest.mark.parametrize("option", ["durable", "cached_reads", "snapshot_compaction"])
@pytest.mark.parametrize("value", [None, 0, 1, "", "false", 0.0])
def test_a_switch_takes_only_a_bool(tmp_path: Path, option: str, value: object) -> None:
    """None, 0 or "" would turn the fsyncs off, and "false" would leave them on."""
    directory = tmp_path / "journal"
    with pytest.raises(ValueError, match=f"{option} must be True or False, not {value!r}"):
        FileJournal(directory, **{option: value})  # type: ignore[arg-type]
    assert not directory.exists(), "a refused option creates nothing"


@pytest.mark.anyio
async def test_an_unencodable_append_leaves_the_rest_of_its_batch_to_commit(
    tmp_path: Path,
) -> None:
    outcomes: dict[str, object] = {}

    async def attempt(journal: FileJournal, stream: str, data: object) -> None:
        try:
            outcomes[stream] = await journal.append(
                stream, [NewEvent("E", data)], expected_version=0
            )
        except ValueError as error:
            outcomes[stream] = error

    async with FileJournal(tmp_path / "journal") as journal:
        async with anyio.create_task_group() as group:
            group.start_soon(attempt, journal, "good-1", 1)
            group.start_soon(attempt, journal, "bad", {"x": {1, 2}})
            group.start_soon(attempt, journal, "good-2", 2)
        stats = journal.statistics()
    assert (stats.batches, stats.appended_events) == (1, 2)  # One batch, without the bad one.
    assert "nothing of this append was written" in str(outcomes["bad"])
    async with FileJournal(tmp_path / "journal") as journal:
        assert sorted([e.stream_id async for e in journal.read_all()]) == ["good-1", "good-2"]


@pytest.mark.anyio
async def test_a_cut_tail_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        await _fill(journal, 3)
    without_clean_close(directory)  # The bytes below stand for a write torn by a crash.
    segment = directory / "00000000000000000001.log"
    with segment.open("ab") as file:
        file.write(b"\x10\x00\x00\x00garbage")
    with caplog.at_level("WARNING", logger="journals.file"):
        async with FileJournal(directory) as journal:
            (tail,) = journal.recovery_report.torn_tails
    assert tail.bytes_cut == 11
    assert f"cut a torn tail: {segment} at offset {tail.offset}, 11 bytes" in caplog.text


@pytest.mark.anyio
async def test_a_cancelled_caller_does_not_disturb_its_batch(tmp_path: Path) -> None:
    # The append took its place before it first waited, so it commits; only the caller stops
    # waiting. The other appends of its batch are answered as usual.
    placed = anyio.Event()
    results: list[object] = []
    scope = anyio.CancelScope()

    async def cancelled(journal: FileJournal) -> None:
        with scope:
            placed.set()
            await journal.append("cancelled", [NewEvent("E", 0)], expected_version=0)
            results.append("not cancelled")

    async def other(journal: FileJournal, index: int) -> None:
        results.append(
            await journal.append(f"other-{index}", [NewEvent("E", index)], expected_version=0)
        )

    async with FileJournal(tmp_path / "journal") as journal:
        async with anyio.create_task_group() as group:
            group.start_soon(cancelled, journal)
            await placed.wait()
            for index in range(3):
                group.start_soon(other, journal, index)
            scope.cancel()
        assert scope.cancelled_caught
        assert len(results) == 3
        assert await journal.stream_version("cancelled") == 1
        assert [e.data async for e in journal.read("cancelled")] == [0]


@pytest.mark.anyio
async def test_start_append_places_at_once_and_answers_what_append_would(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    async with FileJournal(directory) as journal:
        # Runs of one stream's appends in a batch (a, a, then b, then a again).
        plan = [("a", 2, 0), ("a", 1, 2), ("b", 1, 0), ("a", 1, 3)]
        started = []
        for stream, count, expected in plan:
            events = [NewEvent("E", {"stream": stream, "i": i}) for i in range(count)]
            placed = journal.start_append(stream, events, expected_version=expected)
            assert placed is not None
            started.append(placed)
        assert [(version, position) for _, _, version, position in started] == [
            (2, 2),
            (3, 3),
            (1, 4),
            (4, 5),
        ]
        assert await journal.head_position() == 0  # Placed, not yet durable.
        for durable, outcome, _, _ in started:
            await durable
            outcome.raise_error()
        assert (await journal.stream_version("a"), await journal.stream_version("b")) == (4, 1)
        stats = journal.statistics()
        assert (stats.appends, stats.appended_events, stats.batches) == (4, 5, 1)
        # No tentative version is left behind: the next append checks against the durable one.
        result = await journal.append("a", [NewEvent("E", "last")], expected_version=4)
        assert (result.version, result.position) == (5, 6)
    async with FileJournal(directory) as journal:
        read = [(e.stream_id, e.version, e.position) async for e in journal.read_all()]
    assert read == [("a", 1, 1), ("a", 2, 2), ("a", 3, 3), ("b", 1, 4), ("a", 4, 5), ("a", 5, 6)]


Start = Callable[[str, list[str], list[Any], int], StartedAppend | None]


def _starter(journal: FileJournal, how: str) -> Start:
    """Start an append of events given as type names and data, as ``NewEvent`` objects or
    as columns."""

    def columns(
        stream: str, types: list[str], data: list[Any], expected: int
    ) -> StartedAppend | None:
        return journal.start_append_columns(stream, types, data, expected_version=expected)

    def new_events(
        stream: str, types: list[str], data: list[Any], expected: int
    ) -> StartedAppend | None:
        events = [NewEvent(t, d) for t, d in zip(types, data, strict=True)]
        return journal.start_append(stream, events, expected_version=expected)

    return columns if how == "columns" else new_events


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["new events", "columns"])
async def test_start_append_refuses_what_append_refuses_and_places_nothing(
    tmp_path: Path, how: str
) -> None:
    async with FileJournal(tmp_path / "journal") as journal:
        start = _starter(journal, how)
        with pytest.raises(ValueError, match="type"):
            start("s", [""], [1], 0)
        with pytest.raises(ValueError, match="at least one event"):
            start("s", [], [], 0)
        with pytest.raises(EventEncodingError):
            start("s", ["E"], [{1, 2}], 0)
        with pytest.raises(ValueError, match="stream id"):
            start("", ["E"], [1], 0)
        with pytest.raises(ConcurrencyError):
            start("s", ["E"], [1], 3)
        placed = start("s", ["E"], [1], 0)
        assert placed is not None
        durable, outcome, version, position = placed
        await durable
        outcome.raise_error()
        assert (version, position) == (1, 1)
        assert [e.data async for e in journal.read_all()] == [1]


@pytest.mark.anyio
async def test_start_append_columns_places_what_start_append_would(tmp_path: Path) -> None:
    plans: list[tuple[str, list[str], list[Any]]] = [
        ("a", ["Opened/1"], [{"owner": "ada"}]),
        ("a", ["X", "Y", "Z"], [1, [2], "3"]),
    ]
    placed = {}
    for how in ("new events", "columns"):
        async with FileJournal(tmp_path / how) as journal:
            start = _starter(journal, how)
            for stream, types, data in plans:
                started = start(stream, types, data, await journal.stream_version(stream))
                assert started is not None
                durable, outcome, _, _ = started
                await durable
                outcome.raise_error()
            placed[how] = [
                (e.stream_id, e.version, e.position, e.type, e.data, dict(e.metadata))
                async for e in journal.read_all()
            ]
    assert placed["columns"] == placed["new events"]
    assert [row[3] for row in placed["columns"]] == ["Opened/1", "X", "Y", "Z"]
    async with FileJournal(tmp_path / "columns") as journal:
        with pytest.raises(ValueError, match="as long as each other"):
            journal.start_append_columns("a", ["A", "B"], [1], expected_version=4)
        assert await journal.stream_version("a") == 4


@pytest.mark.anyio
async def test_start_append_answers_none_when_the_append_would_wait_for_room(
    tmp_path: Path,
) -> None:
    event = [NewEvent("N", {"pad": "p" * 100})]
    async with FileJournal(
        tmp_path / "journal", batch_bytes_max=512, queue_bytes_max=1024
    ) as journal:
        started = []
        while (placed := journal.start_append("s", event, expected_version=None)) is not None:
            started.append(placed)
        assert 0 < len(started) < 20
        # The refused append took no place: the next one gets the version it would have had.
        result = await journal.append("s", event, expected_version=len(started))
        assert result.version == len(started) + 1
        for durable, outcome, _, _ in started:
            await durable
            outcome.raise_error()
        assert await journal.stream_version("s") == len(started) + 1


@pytest.mark.anyio
async def test_many_appenders_of_one_stream_are_answered_in_order(tmp_path: Path) -> None:
    # Enough appenders that a committed batch wakes them in two halves (SPLIT_WAKE_MIN).
    answers: dict[int, list[int]] = {}

    async def appender(journal: FileJournal, index: int) -> None:
        for round_ in range(5):
            result = await journal.append(
                "hot", [NewEvent("N", {"by": index, "round": round_})], expected_version=None
            )
            answers.setdefault(index, []).append(result.version)

    async with FileJournal(tmp_path / "journal") as journal:
        async with anyio.create_task_group() as group:
            for index in range(300):
                group.start_soon(appender, journal, index)
        events = [event async for event in journal.read("hot")]
        stats = journal.statistics()
    assert [event.version for event in events] == list(range(1, 1501))
    for index, versions in answers.items():
        assert versions == sorted(versions)
        assert [events[v - 1].data for v in versions] == [
            {"by": index, "round": r} for r in range(5)
        ]
    assert stats.batches < 300  # They shared batches.
