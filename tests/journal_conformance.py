"""The journal contract, as one abstract suite run against every backend.

A backend's test module subclasses ``JournalConformance`` and implements ``make_journal``;
every test here (and those of ``start_append``, in journal_conformance_start_append.py, of
callers' input, in journal_conformance_input.py, of snapshots, in
journal_conformance_snapshots.py, and of reads of a journal not open, in
journal_conformance_closed.py) then runs against it, on asyncio and on trio.
"""

from __future__ import annotations

import abc
import functools
import math
from array import array
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from journals import (
    AppendResult,
    ConcurrencyError,
    EventEncodingError,
    InvalidStreamId,
    Journal,
    JournalClosed,
    NewEvent,
    RecordedEvent,
    StreamChunk,
)

from .journal_conformance_closed import ClosedConformance
from .journal_conformance_input import InputConformance
from .journal_conformance_snapshots import SnapshotConformance
from .journal_conformance_start_append import StartAppendConformance, placed, settled


def events(*payloads: Any, type: str = "Happened") -> list[NewEvent]:
    return [NewEvent(type, payload) for payload in payloads]


async def collect(iterator: Any) -> list[RecordedEvent]:
    return [event async for event in iterator]


async def collect_chunks(iterator: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in iterator]


class JournalConformance(
    StartAppendConformance, InputConformance, SnapshotConformance, ClosedConformance
):
    """Subclass and implement ``make_journal`` to run the contract against a backend."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @abc.abstractmethod
    def make_journal(self, directory: Path) -> Journal:
        """A new, not yet opened journal kept in ``directory`` (ignored by memory backends)."""

    # -- append and read ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_versions_and_positions_start_at_one_and_are_gapless(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            first = await journal.append("a", events(1, 2), expected_version=0)
            second = await journal.append("b", events(3), expected_version=0)
            third = await journal.append("a", events(4), expected_version=2)
            assert (first, second, third) == (
                AppendResult(version=2, position=2),
                AppendResult(version=1, position=3),
                AppendResult(version=3, position=4),
            )
            stream_a = await collect(journal.read("a"))
            assert [(e.version, e.position, e.data) for e in stream_a] == [
                (1, 1, 1),
                (2, 2, 2),
                (3, 4, 4),
            ]
            assert await journal.stream_version("a") == 3
            assert await journal.stream_version("b") == 1
            assert await journal.stream_version("never") == 0
            assert await journal.head_position() == 4

    @pytest.mark.anyio
    async def test_appending_columns_is_appending_their_new_events(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            started = journal.start_append_columns(
                "s", ["A", "B"], [{"i": 1}, [2]], expected_version=0
            )
            assert await settled(started) == AppendResult(version=2, position=2)
            got = await collect(journal.read("s"))
            assert [(e.type, e.data, dict(e.metadata)) for e in got] == [
                ("A", {"i": 1}, {}),
                ("B", [2], {}),
            ]

    @pytest.mark.anyio
    async def test_read_ranges(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(*range(1, 11)), expected_version=0)
            read = functools.partial(journal.read, "s")
            assert [e.version for e in await collect(read(4, 6))] == [4, 5, 6]
            assert [e.version for e in await collect(read(9))] == [9, 10]
            assert [e.version for e in await collect(read(11))] == []
            assert [e.version for e in await collect(read(3, 2))] == []
            assert [e.version for e in await collect(read(1, 100))] == list(range(1, 11))
            assert await collect(journal.read("missing")) == []
            with pytest.raises(ValueError, match="from_version starts at 1"):
                await collect(read(0))

    @pytest.mark.anyio
    async def test_long_stream_reads_across_chunks(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            for start in range(0, 3000, 500):
                await journal.append(
                    "long", events(*range(start, start + 500)), expected_version=start
                )
            got = await collect(journal.read("long"))
            assert [e.data for e in got] == list(range(3000))
            assert [e.version for e in got] == list(range(1, 3001))

    @pytest.mark.anyio
    async def test_read_chunks_hold_what_read_yields(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            for start in range(0, 3000, 500):
                await journal.append(
                    "long", events(*range(start, start + 500)), expected_version=start
                )
                await journal.append("other", events(start), expected_version=None)
            for from_version, to_version in ((1, None), (7, 2900), (2999, None), (3001, None)):
                read = await collect(journal.read("long", from_version, to_version))
                chunks = await collect_chunks(journal.read_chunks("long", from_version, to_version))
                assert all(len(chunk) > 0 for chunk in chunks)
                assert [event for chunk in chunks for event in chunk.events()] == read
                versions = [chunk.first_version for chunk in chunks]
                assert versions == sorted(versions)
                assert [chunk.stream_id for chunk in chunks] == ["long"] * len(chunks)
            assert await collect_chunks(journal.read_chunks("missing")) == []
            with pytest.raises(ValueError, match="from_version starts at 1"):
                await collect_chunks(journal.read_chunks("long", 0))

    @pytest.mark.anyio
    async def test_chunk_positions_are_an_array_of_unsigned_64_bit_ints(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("a", events(1, 2), expected_version=0)
            await journal.append("b", events(3), expected_version=0)
            await journal.append("a", events(4), expected_version=2)
            chunk = await journal.read_chunk("a")
            chunks = await collect_chunks(journal.read_chunks("a", 2))
        assert chunk is not None
        assert [type(chunk.positions), chunk.positions.typecode] == [array, "Q"]
        assert chunk.positions == array("Q", [1, 2, 4])
        assert [c.positions for c in chunks] == [array("Q", [2, 4])]

    @pytest.mark.anyio
    async def test_read_chunk_is_the_first_chunk_and_reads_on_from_its_end(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            for start in range(0, 3000, 500):
                await journal.append(
                    "long", events(*range(start, start + 500)), expected_version=start
                )
                await journal.append("other", events(start), expected_version=None)
            for from_version, to_version in ((1, None), (7, 2900), (2999, None), (5, 5)):
                chunks = await collect_chunks(journal.read_chunks("long", from_version, to_version))
                first = await journal.read_chunk("long", from_version, to_version)
                assert first is not None
                assert list(first.events()) == list(chunks[0].events())
                # Asked again from each chunk's end, the chunks hold what read yields.
                read_on: list[RecordedEvent] = []
                chunk: StreamChunk | None = first
                while chunk is not None:
                    read_on += chunk.events()
                    chunk = await journal.read_chunk("long", chunk.last_version + 1, to_version)
                assert read_on == await collect(journal.read("long", from_version, to_version))
            assert await journal.read_chunk("long", 3001) is None
            assert await journal.read_chunk("long", 10, 9) is None
            assert await journal.read_chunk("missing") is None
            with pytest.raises(ValueError, match="from_version starts at 1"):
                await journal.read_chunk("long", 0)
            with pytest.raises(ValueError, match="is below from_version"):
                await journal.read_chunk("long", 10, 8)

    @pytest.mark.anyio
    async def test_recorded_event_carries_everything_appended(self, tmp_path: Path) -> None:
        before = datetime.now(UTC) - timedelta(seconds=1)
        async with self.make_journal(tmp_path) as journal:
            data = {"amount": 10, "note": "café ☕", "nested": {"list": [1, 2.5, None, True]}}
            metadata = {"correlation_id": "c-1", "causation": 7}
            await journal.append(
                "acct-1", [NewEvent("Deposited", data, metadata)], expected_version=0
            )
            (event,) = await collect(journal.read("acct-1"))
        assert event.stream_id == "acct-1"
        assert event.type == "Deposited"
        assert event.data == data
        assert dict(event.metadata) == metadata
        assert before <= event.recorded_at <= datetime.now(UTC) + timedelta(seconds=1)
        assert event.recorded_at.tzinfo is not None

    @pytest.mark.anyio
    async def test_empty_metadata_reads_back_empty(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events({"x": 1}), expected_version=0)
            (event,) = await collect(journal.read("s"))
        assert dict(event.metadata) == {}

    @pytest.mark.anyio
    async def test_data_reads_back_in_its_json_form(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            payload = {"tuple": (1, 2), "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
            await journal.append("s", events(payload), expected_version=0)
            payload["tuple"] = (9, 9)  # A caller's later mutation must not reach the journal.
            (event,) = await collect(journal.read("s"))
        assert event.data == {"tuple": [1, 2], "when": "2026-01-02T03:04:05+00:00"}

    # -- atomicity and concurrency -------------------------------------------------------------

    @pytest.mark.anyio
    async def test_concurrency_conflict_names_the_stream_and_writes_nothing(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("order-7", events(1, 2), expected_version=0)
            with pytest.raises(ConcurrencyError, match=r"'order-7' is at version 2") as caught:
                await journal.append("order-7", events(3), expected_version=1)
            assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
            with pytest.raises(ConcurrencyError):
                await journal.append("order-8", events(1), expected_version=3)
            assert await journal.stream_version("order-7") == 2
            assert await journal.stream_version("order-8") == 0
            assert await journal.head_position() == 2

    @pytest.mark.anyio
    async def test_append_without_check(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(1), expected_version=None)
            result = await journal.append("s", events(2, 3), expected_version=None)
            assert result == AppendResult(version=3, position=3)

    @pytest.mark.anyio
    async def test_concurrent_appends_with_the_same_expected_version_one_wins(
        self, tmp_path: Path
    ) -> None:
        outcomes: list[str] = []

        async def attempt(journal: Journal, label: str) -> None:
            try:
                await journal.append("hot", events(label, label), expected_version=0)
            except ConcurrencyError:
                outcomes.append("conflict")
            else:
                outcomes.append("won")

        async with self.make_journal(tmp_path) as journal:
            async with anyio.create_task_group() as group:
                for label in ("a", "b", "c", "d"):
                    group.start_soon(attempt, journal, label)
            got = await collect(journal.read("hot"))
        assert sorted(outcomes) == ["conflict", "conflict", "conflict", "won"]
        # The winner's two events are both there, together: multi-event appends are atomic.
        assert len(got) == 2
        assert got[0].data == got[1].data

    @pytest.mark.anyio
    async def test_many_concurrent_appenders_get_gapless_versions_and_positions(
        self, tmp_path: Path
    ) -> None:
        results: list[tuple[str, AppendResult]] = []

        async def appender(journal: Journal, stream: str, count: int) -> None:
            for index in range(count):
                result = await journal.append(stream, events(index), expected_version=index)
                results.append((stream, result))

        async with self.make_journal(tmp_path) as journal:
            async with anyio.create_task_group() as group:
                for stream in range(50):
                    group.start_soon(appender, journal, f"s-{stream}", 20)
            everything = await collect(journal.read_all())
        assert [e.position for e in everything] == list(range(1, 1001))
        for stream in range(50):
            versions = [e.version for e in everything if e.stream_id == f"s-{stream}"]
            assert versions == list(range(1, 21))
        # Each append was answered with what it really got.
        by_position = {e.position: e for e in everything}
        for stream_id, result in results:
            assert by_position[result.position].stream_id == stream_id
            assert by_position[result.position].version == result.version

    @pytest.mark.anyio
    async def test_order_is_fixed_when_append_is_called(self, tmp_path: Path) -> None:
        # The runtime pipelines on this: appends keep the order in which they were called, even
        # though none of them has returned yet when the next is called.
        called: list[int] = []

        async def call(journal: Journal, index: int) -> None:
            called.append(index)
            # Versions are reserved at call time too, so each call may expect the one before.
            await journal.append("pipe", events(index), expected_version=len(called) - 1)

        async with self.make_journal(tmp_path) as journal:
            async with anyio.create_task_group() as group:
                for index in range(100):
                    group.start_soon(call, journal, index)
            got = await collect(journal.read("pipe"))
        assert sorted(called) == list(range(100))
        assert [e.data for e in got] == called

    @pytest.mark.anyio
    async def test_read_all_is_global_order_from_a_position(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            for index in range(30):
                await journal.append(f"s{index % 3}", events(index), expected_version=None)
            got = await collect(journal.read_all(from_position=11))
            assert [e.data for e in got] == list(range(10, 30))
            assert [e.position for e in got] == list(range(11, 31))
            assert await collect(journal.read_all(from_position=31)) == []
            bounded = await collect(journal.read_all(from_position=5, to_position=7))
            assert [e.position for e in bounded] == [5, 6, 7]
            with pytest.raises(ValueError, match="from_position starts at 1"):
                await collect(journal.read_all(from_position=0))

    # -- snapshots ------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_snapshots_latest_at_or_below_a_version(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(*range(10)), expected_version=0)
            assert await journal.load_snapshot("s") is None
            await journal.save_snapshot("s", 3, {"total": 3}, {"schema": 1})
            await journal.save_snapshot("s", 8, {"total": 8})
            latest = await journal.load_snapshot("s")
            assert latest is not None
            assert (latest.stream_id, latest.version, latest.data) == ("s", 8, {"total": 8})
            older = await journal.load_snapshot("s", max_version=7)
            assert older is not None
            assert (older.version, older.data, dict(older.metadata)) == (
                3,
                {"total": 3},
                {"schema": 1},
            )
            assert await journal.load_snapshot("s", max_version=2) is None
            assert await journal.load_snapshot("other") is None

    @pytest.mark.anyio
    async def test_snapshots_saved_out_of_version_order_load_by_version(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(*range(10)), expected_version=0)
            for version in (8, 3, 5, 9, 1):
                await journal.save_snapshot("s", version, {"at": version})

            async def at_or_below(version: int | None) -> int | None:
                snapshot = await journal.load_snapshot("s", max_version=version)
                assert snapshot is None or snapshot.data == {"at": snapshot.version}
                return None if snapshot is None else snapshot.version

            found = [await at_or_below(version) for version in (None, 10, 8, 7, 4, 2, 1)]
            assert found == [9, 9, 8, 5, 3, 1, 1]

    @pytest.mark.anyio
    async def test_snapshot_must_be_at_an_existing_version(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(1, 2), expected_version=0)
            with pytest.raises(ValueError, match="durable version"):
                await journal.save_snapshot("s", 3, {})
            with pytest.raises(ValueError, match="durable version"):
                await journal.save_snapshot("s", 0, {})
            with pytest.raises(EventEncodingError):
                await journal.save_snapshot("s", 1, {"bad": object()})
            assert await journal.load_snapshot("s") is None

    # -- ids and bad input ----------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_unicode_stream_ids(self, tmp_path: Path) -> None:
        ids = ["konto-ø", "注文-42", "emoji-🙂", "a" * 255, "with space/and:colon"]
        async with self.make_journal(tmp_path) as journal:
            for stream in ids:
                await journal.append(stream, events(stream), expected_version=0)
            for stream in ids:
                (event,) = await collect(journal.read(stream))
                assert (event.stream_id, event.data) == (stream, stream)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("stream_id", "message"),
        [
            ("", "must not be empty"),
            ("x" * 256, "the limit is 255"),
            ("é" * 128, "the limit is 255"),
            ("bad-\udc80", "not valid UTF-8"),
            (42, "must be a str"),
        ],
    )
    async def test_invalid_stream_ids_are_refused(
        self, tmp_path: Path, stream_id: Any, message: str
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            with pytest.raises(ValueError, match=message):
                await journal.append(stream_id, events(1), expected_version=None)
            # A journal error as well, still a ValueError for code that caught that.
            with pytest.raises(InvalidStreamId, match=message):
                await journal.append(stream_id, events(1), expected_version=None)
            with pytest.raises(InvalidStreamId, match=message):
                await journal.stream_version(stream_id)
            with pytest.raises(InvalidStreamId, match=message):
                await collect(journal.read(stream_id))
            assert await journal.head_position() == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("bad_events", "message"),
        [
            ([], "at least one event"),
            (NewEvent("One", 1), "a list of NewEvent, not a single NewEvent"),
            ([{"type": "X"}], "NewEvent values"),
            ([NewEvent("", 1)], "non-empty str"),
        ],
    )
    async def test_invalid_event_lists_are_refused(
        self, tmp_path: Path, bad_events: Any, message: str
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            with pytest.raises(ValueError, match=message):
                await journal.append("s", bad_events, expected_version=None)
            assert await journal.head_position() == 0

    @pytest.mark.anyio
    async def test_unencodable_data_fails_only_its_own_append(self, tmp_path: Path) -> None:
        outcomes: dict[str, object] = {}

        async def attempt(journal: Journal, stream: str, data: Any) -> None:
            try:
                outcomes[stream] = await journal.append(stream, events(data), expected_version=0)
            except EventEncodingError as error:
                outcomes[stream] = error

        async with self.make_journal(tmp_path) as journal:
            async with anyio.create_task_group() as group:
                group.start_soon(attempt, journal, "good-1", {"ok": 1})
                group.start_soon(attempt, journal, "bad", {"set": {1, 2}})
                group.start_soon(attempt, journal, "good-2", {"ok": 2})
                group.start_soon(attempt, journal, "bad-key", {1: "int key"})
            assert isinstance(outcomes["bad"], EventEncodingError)
            assert isinstance(outcomes["bad-key"], EventEncodingError)
            assert "nothing of this append was written" in str(outcomes["bad"])
            got = await collect(journal.read_all())
            assert sorted(e.stream_id for e in got) == ["good-1", "good-2"]
            assert await journal.stream_version("bad") == 0
            # The failed append consumed no version: the stream starts at 1 when fixed.
            fixed = await journal.append("bad", events({"set": [1, 2]}), expected_version=0)
            assert fixed.version == 1

    @pytest.mark.anyio
    async def test_unencodable_metadata_is_refused(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            with pytest.raises(EventEncodingError, match="metadata"):
                await journal.append(
                    "s", [NewEvent("X", 1, {"when": object()})], expected_version=0
                )
            assert await journal.head_position() == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "value",
        [math.nan, math.inf, -math.inf, {"a": [1.5, None, math.nan]}, ("x", {"b": -math.inf})],
    )
    async def test_non_finite_floats_are_refused_before_anything_is_written(
        self, tmp_path: Path, value: Any
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", events(1), expected_version=0)
            with pytest.raises(EventEncodingError, match="non-finite float"):
                await journal.append("s", events({"v": value}), expected_version=1)
            with pytest.raises(EventEncodingError, match=r"metadata .*non-finite float"):
                await journal.append("s", [NewEvent("X", 1, {"v": value})], expected_version=1)
            # The one-event column path (the runtime's), twice: a known type takes the fast path.
            for _ in range(2):
                with pytest.raises(EventEncodingError, match="non-finite float"):
                    await self._append_one_column(journal, value)
            with pytest.raises(EventEncodingError, match=r"snapshot data .*non-finite float"):
                await journal.save_snapshot("s", 1, {"total": value})
            with pytest.raises(EventEncodingError, match=r"snapshot metadata .*non-finite"):
                await journal.save_snapshot("s", 1, {}, {"v": value})
            assert await journal.head_position() == 1
            assert await journal.stream_version("s") == 1
            assert await journal.load_snapshot("s") is None

    @staticmethod
    async def _append_one_column(journal: Journal, value: Any) -> None:
        placed(journal.start_append_columns("s", ["Happened"], [value], expected_version=1))

    @pytest.mark.anyio
    async def test_nulls_and_the_word_null_are_stored_as_given(self, tmp_path: Path) -> None:
        value = {"none": None, "word": "null", "list": [None, 1.5, "nullable"], "zero": -0.0}
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("A", value, {"m": None})], expected_version=0)
            await journal.save_snapshot("s", 1, value, {"m": None})
            (event,) = await collect(journal.read("s"))
            assert (event.data, dict(event.metadata)) == (value, {"m": None})
            snapshot = await journal.load_snapshot("s")
            assert snapshot is not None
            assert (snapshot.data, dict(snapshot.metadata)) == (value, {"m": None})

    # -- lifecycle --------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_closed_journal_refuses_appends(self, tmp_path: Path) -> None:
        journal = self.make_journal(tmp_path)
        async with journal:
            await journal.append("s", events(1), expected_version=0)
        with pytest.raises(JournalClosed, match="closed"):
            await journal.append("s", events(2), expected_version=1)
        await journal.aclose()  # Idempotent.

    @pytest.mark.anyio
    async def test_appends_after_the_opener_was_cancelled_are_refused_as_closed(
        self, tmp_path: Path
    ) -> None:
        journal = self.make_journal(tmp_path)
        with anyio.CancelScope() as scope:
            async with journal:
                await journal.append("s", events(1), expected_version=0)
                scope.cancel()  # The opener's task is cancelled: its committer stops.
                try:
                    await anyio.sleep_forever()
                finally:
                    # A clean-up that records something, shielded, before the journal closes.
                    with anyio.CancelScope(shield=True), anyio.fail_after(30):
                        for _ in range(5):
                            await anyio.lowlevel.checkpoint()  # The committer ends meanwhile.
                        with pytest.raises(JournalClosed, match="closed"):
                            journal.start_append("s", events(2), expected_version=1)
                        with pytest.raises(JournalClosed, match="closed"):
                            journal.start_append_columns("s", ["A"], [2], expected_version=1)
                        with pytest.raises(JournalClosed, match="closed"):
                            await journal.append("s", events(2), expected_version=1)
                        with pytest.raises(JournalClosed, match="closed"):
                            await journal.save_snapshot("s", 1, {})
                        assert await journal.head_position() == 1
        assert scope.cancelled_caught

    @pytest.mark.anyio
    async def test_statistics_count_what_was_appended(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            for index in range(5):
                await journal.append(f"s{index % 2}", events(1, 2), expected_version=None)
            stats = journal.statistics()
        assert (stats.streams, stats.events, stats.head_position) == (2, 10, 10)
        assert (stats.appends, stats.appended_events) == (5, 10)
        assert 1 <= stats.batches <= 5
