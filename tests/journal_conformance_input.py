"""What the journal contract takes from callers and what it refuses, the same on every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio: stream ids that are str subclasses, the size limit of one event, and metadata that is
not a mapping.
"""

from __future__ import annotations

import abc
import enum
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import journals._committer
import journals._memory
from journals import EventEncodingError, Journal, NewEvent
from journals._validation import EVENT_TYPE_BYTES_MAX, EVENTS_PER_APPEND_MAX

from .journal_conformance_start_append import settled

EVENT_BYTES_MAX = 64 * 1024 * 1024 - 600
"""What one event's encoded data and metadata may hold together (docs/journal-format.md)."""


class Stream(enum.StrEnum):
    ORDERS = "orders"


class Kind(enum.StrEnum):
    PLACED = "Placed"


class Version(enum.IntEnum):
    FIRST = 1
    SECOND = 2
    THIRD = 3


class _Shouting(str):
    """A str subclass with an ``encode`` of its own."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return super().encode(encoding, errors).upper()


BAD_READ_ARGUMENTS: dict[str, tuple[str, tuple[Any, ...], str]] = {
    # case: (method, arguments, the start of what it raises)
    "read_chunk(2, 1.5)": ("read_chunk", ("s", 2, 1.5), "to_version is a stream version"),
    "read_chunk(1.0)": ("read_chunk", ("s", 1.0), "from_version is a stream version"),
    "read_chunk(True)": ("read_chunk", ("s", True), "from_version is a stream version"),
    "read_chunk(1, True)": ("read_chunk", ("s", 1, True), "to_version is a stream version"),
    "read_chunk(True, False)": ("read_chunk", ("s", True, False), "from_version is a stream"),
    "read_chunks(1, 2.0)": ("read_chunks", ("s", 1, 2.0), "to_version is a stream version"),
    "read('1')": ("read", ("s", "1"), "from_version is a stream version"),
    "read_all(1.5)": ("read_all", (1.5,), "from_position is a global position"),
    "read_all(True)": ("read_all", (True,), "from_position is a global position"),
    "read_all(1, 2.5)": ("read_all", (1, 2.5), "to_position is a global position"),
    "load_snapshot(True)": ("load_snapshot", ("s", True), "max_version is a stream version"),
    "load_snapshot(1.5)": ("load_snapshot", ("s", 1.5), "max_version is a stream version"),
}


async def _answer_of(read: Any) -> object:
    """What a read answers: awaited, or iterated to its end."""
    if hasattr(read, "__aiter__"):
        return [item async for item in read]
    return await read


class InputConformance(abc.ABC):
    """Callers' input against a backend (see the module)."""

    @abc.abstractmethod
    def make_journal(self, directory: Path) -> Journal:
        """A new, not yet opened journal kept in ``directory`` (ignored by memory backends)."""

    @pytest.mark.anyio
    async def test_a_str_subclass_stream_id_is_its_str(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append(Stream.ORDERS, [NewEvent("Placed", 1)], expected_version=0)
            await journal.append("orders", [NewEvent("Placed", 2)], expected_version=1)
            assert await journal.stream_version(Stream.ORDERS) == 2
            read = [event.data async for event in journal.read(Stream.ORDERS)]
            chunks = [chunk async for chunk in journal.read_chunks(Stream.ORDERS)]
            chunk = await journal.read_chunk(Stream.ORDERS)
            assert chunk is not None
            assert read == [data for chunk in chunks for data in chunk.data] == [1, 2]
            assert list(chunk.data) == [1, 2]
            assert (chunk.first_version, chunk.last_version) == (1, 2)
            later = await journal.read_chunk(Stream.ORDERS, 2)
            assert later is not None
            assert list(later.data) == [2]
            assert await journal.read_chunk(Stream.ORDERS, 3) is None

    @pytest.mark.anyio
    async def test_a_str_subclass_stream_id_or_event_type_reads_back_as_a_plain_str(
        self, tmp_path: Path
    ) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append(Stream.ORDERS, [NewEvent(Kind.PLACED, 1)], expected_version=0)
            await settled(
                journal.start_append_columns(Stream.ORDERS, [Kind.PLACED], [2], expected_version=1)
            )
            await journal.save_snapshot(Stream.ORDERS, 2, {})
            read_all = [event async for event in journal.read_all()]
            ids, types = [event.stream_id for event in read_all], [e.type for e in read_all]
            # Read by the plain str or by the member: what comes back is the plain str.
            for stream_id in ("orders", Stream.ORDERS):
                read = [event async for event in journal.read(stream_id)]
                chunks = [chunk async for chunk in journal.read_chunks(stream_id)]
                chunk = await journal.read_chunk(stream_id)
                snapshot = await journal.load_snapshot(stream_id)
                assert chunk is not None
                assert snapshot is not None
                ids += [e.stream_id for e in read] + [c.stream_id for c in [*chunks, chunk]]
                ids.append(snapshot.stream_id)
                types += [event.type for event in read] + list(chunk.types)
            assert {type(text) for text in ids + types} == {str}
            assert (ids, types) == (["orders"] * 12, ["Placed"] * 10)

    @pytest.mark.anyio
    @pytest.mark.parametrize("with_metadata", [False, True])
    async def test_an_event_larger_than_a_record_holds_is_refused(
        self, tmp_path: Path, with_metadata: bool
    ) -> None:
        if with_metadata:  # Each half fits; together they are over.
            data, metadata = "x" * (EVENT_BYTES_MAX // 2), {"m": "y" * (EVENT_BYTES_MAX // 2)}
        else:  # Two bytes over the limit, with its quotes.
            data, metadata = "x" * EVENT_BYTES_MAX, {}
        message = rf"event 1 \('Big'\) is \d+ bytes encoded; the limit is {EVENT_BYTES_MAX}\."
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("Small", 1)], expected_version=0)
            big = [NewEvent("Small", 2), NewEvent("Big", data, metadata)]
            with pytest.raises(EventEncodingError, match=message):
                await journal.append("s", big, expected_version=1)
            with pytest.raises(EventEncodingError, match=message):
                journal.start_append("s", big, expected_version=1)
            if not metadata:  # The columns path (the runtime's): no metadata.
                with pytest.raises(EventEncodingError, match="the limit is"):
                    journal.start_append_columns("s", ["Big"], [data], expected_version=1)
            # Nothing of it was written, and the stream goes on at the next version.
            assert await journal.head_position() == 1
            result = await journal.append("s", [NewEvent("Small", 3)], expected_version=1)
            assert (result.version, result.position) == (2, 2)

    @pytest.mark.anyio
    async def test_an_append_larger_than_one_batch_may_hold_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Three records of 8 (frame) + 31 (header) + 1 (stream id) + 1 (type) + 102 (data)
        # bytes: every backend counts an append's bytes as FileJournal's records take them.
        events = [NewEvent("T", "x" * 100)] * 3
        size = 3 * (8 + 31 + 1 + 1 + 102)
        for module in (journals._committer, journals._memory):
            monkeypatch.setattr(module, "APPEND_BYTES_MAX", size - 1)
        message = rf"the append's 3 events take {size} bytes as records; .* at most {size - 1}\."
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)
            with pytest.raises(EventEncodingError, match=message):
                await journal.append("s", events, expected_version=1)
            with pytest.raises(EventEncodingError, match=message):
                journal.start_append("s", events, expected_version=1)
            with pytest.raises(EventEncodingError, match=message):
                journal.start_append_columns("s", ["T"] * 3, ["x" * 100] * 3, expected_version=1)
            # Nothing of it was written; the stream goes on, and an append of the limit is taken.
            assert await journal.head_position() == 1
            for module in (journals._committer, journals._memory):
                monkeypatch.setattr(module, "APPEND_BYTES_MAX", size)
            result = await journal.append("s", events, expected_version=1)
            assert (result.version, result.position) == (4, 4)
            assert [event.data async for event in journal.read("s")] == [1] + ["x" * 100] * 3

    @pytest.mark.anyio
    async def test_a_generator_of_events_is_refused_before_it_is_consumed(
        self, tmp_path: Path
    ) -> None:
        yielded: list[int] = []

        def events() -> Iterator[NewEvent]:
            for number in range(2):
                yielded.append(number)
                yield NewEvent("T", number)

        async with self.make_journal(tmp_path) as journal:
            message = r"append takes a list of NewEvent, not a generator: pass list\(events\)"
            with pytest.raises(ValueError, match=message):
                await journal.append("s", events(), expected_version=0)  # type: ignore[arg-type]
            assert yielded == []
            assert await journal.head_position() == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("metadata", "kind"),
        [
            (5, "int"),
            (["x"], "list"),
            ([("a", 1)], "list"),
            ("text", "str"),
            ({1, 2}, "set"),
            # Empty, but no more a mapping: refused as well, not taken as "no metadata".
            (0, "int"),
            ([], "list"),
            ("", "str"),
            ((), "tuple"),
        ],
    )
    async def test_metadata_that_is_not_a_mapping_is_refused(
        self, tmp_path: Path, metadata: Any, kind: str
    ) -> None:
        message = rf"metadata of event 0 \('E'\) must be a mapping .*, not {kind}; nothing was"
        async with self.make_journal(tmp_path) as journal:
            with pytest.raises(EventEncodingError, match=message):
                await journal.append("s", [NewEvent("E", 1, metadata)], expected_version=0)
            with pytest.raises(EventEncodingError, match=message):
                journal.start_append("s", [NewEvent("E", 1, metadata)], expected_version=0)
            assert await journal.head_position() == 0
            # A mapping that is not a dict is taken, and reads back as what it held.
            proxy = types.MappingProxyType({"correlation_id": "c-1"})
            await settled(journal.start_append("s", [NewEvent("E", 1, proxy)], expected_version=0))
            await journal.append("s", [NewEvent("E", 2)], expected_version=1)
            read = [event async for event in journal.read("s")]
            assert dict(read[0].metadata) == {"correlation_id": "c-1"}
            with pytest.raises(EventEncodingError, match="snapshot metadata must be a mapping"):
                await journal.save_snapshot("s", 1, {}, metadata)

    @pytest.mark.anyio
    async def test_no_metadata_is_none_or_an_empty_mapping(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            no_metadata: list[Any] = [None, {}, types.MappingProxyType({})]
            for version, metadata in enumerate(no_metadata):
                event = NewEvent("E", version, metadata)
                await journal.append("s", [event], expected_version=version)
            await journal.save_snapshot("s", 1, {}, None)
            read = [event async for event in journal.read("s")]
            assert [dict(event.metadata) for event in read] == [{}, {}, {}]

    @pytest.mark.anyio
    @pytest.mark.parametrize("call", BAD_READ_ARGUMENTS)
    async def test_versions_and_positions_of_a_read_are_whole_numbers(
        self, tmp_path: Path, call: str
    ) -> None:
        """A float or a bool is refused, as ``save_snapshot`` refuses it, not read as 0 or 1
        (or as nothing at all)."""
        method, arguments, refused = BAD_READ_ARGUMENTS[call]
        async with self.make_journal(tmp_path) as journal:
            for version in range(3):
                await journal.append("s", [NewEvent("E", version)], expected_version=version)
            await journal.save_snapshot("s", 1, {})
            with pytest.raises(ValueError, match=rf"{refused}.*, a whole number \(an int\), not"):
                await _answer_of(getattr(journal, method)(*arguments))

    @pytest.mark.anyio
    @pytest.mark.parametrize("expected", [False, True])
    async def test_an_expected_version_that_is_a_bool_is_refused(
        self, tmp_path: Path, expected: bool
    ) -> None:
        """``expected_version=True`` is no stream version: it was read as 1 (``False`` as 0),
        so a flag passed by mistake appended as if the caller had checked the version."""
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 0)], expected_version=0)
            refused = r"expected_version is a stream version .*, not (True|False)"
            with pytest.raises(ValueError, match=refused):
                await journal.append("s", [NewEvent("E", 1)], expected_version=expected)
            with pytest.raises(ValueError, match=refused):
                journal.start_append("s", [NewEvent("E", 1)], expected_version=expected)
            with pytest.raises(ValueError, match=refused):
                journal.start_append_columns("s", ["E"], [1], expected_version=expected)
            with pytest.raises(ValueError, match=refused):
                journal.start_append_columns("s", ["E", "E"], [1, 2], expected_version=expected)
            assert await journal.stream_version("s") == 1

    @pytest.mark.anyio
    async def test_the_limits_of_an_append_are_inclusive(self, tmp_path: Path) -> None:
        """``EVENTS_PER_APPEND_MAX`` events and an event type of ``EVENT_TYPE_BYTES_MAX``
        bytes are taken; one more of either is refused, and so is a type that is not UTF-8."""
        longest = "t" * EVENT_TYPE_BYTES_MAX
        async with self.make_journal(tmp_path) as journal:
            most = [NewEvent("E", n) for n in range(EVENTS_PER_APPEND_MAX)]
            assert (await journal.append("a", most, expected_version=0)).version == len(most)
            with pytest.raises(ValueError, match=f"at most {EVENTS_PER_APPEND_MAX} events"):
                await journal.append("a", [*most, NewEvent("E", 0)], expected_version=None)
            # A bad type after a good one: the shared checks (not a fast path) refuse it.
            for bad, refused in [
                (longest + "t", "the limit is 255"),
                ("\udc80", "not valid UTF-8"),
            ]:
                with pytest.raises(ValueError, match=refused):
                    await journal.append(
                        "b", [NewEvent(longest, 1), NewEvent(bad, 2)], expected_version=None
                    )
            await journal.append(
                "b", [NewEvent(longest, 1), NewEvent(longest, 2)], expected_version=0
            )
            assert [event.type async for event in journal.read("b")] == [longest, longest]

    @pytest.mark.anyio
    async def test_a_version_range_that_ends_just_before_it_starts_is_empty(
        self, tmp_path: Path
    ) -> None:
        """``to_version = from_version - 1`` is an empty range, not a mistake, whether the
        versions are plain ints or values that stand for ints."""
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", n) for n in range(3)], expected_version=0)
            for first, last in [(3, 2), (Version.THIRD, Version.SECOND), (1, 0)]:
                assert [event async for event in journal.read("s", first, last)] == []
            with pytest.raises(ValueError, match="to_version 1 is below from_version 3"):
                await _answer_of(journal.read("s", Version.THIRD, Version.FIRST))

    @pytest.mark.anyio
    async def test_versions_given_as_int_enum_members_come_back_as_ints(
        self, tmp_path: Path
    ) -> None:
        """A value that stands for an int is taken for its int, and what a read hands back
        holds plain ints: a chunk's ``first_version`` (and so ``last_version``) too."""
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", n) for n in range(3)], expected_version=0)
            await journal.save_snapshot("s", Version.SECOND, {})
            chunk = await journal.read_chunk("s", Version.SECOND, Version.THIRD)
            chunks = [chunk async for chunk in journal.read_chunks("s", Version.SECOND)]
            read = [event async for event in journal.read("s", Version.SECOND)]
            read_all = [event async for event in journal.read_all(Version.SECOND)]
            snapshot = await journal.load_snapshot("s", Version.THIRD)
            assert chunk is not None
            assert snapshot is not None
            numbers = [chunk.first_version, chunk.last_version, snapshot.version]
            numbers += [c.first_version for c in chunks] + [c.last_version for c in chunks]
            numbers += [number for e in read + read_all for number in (e.version, e.position)]
            assert {type(number) for number in numbers} == {int}
            assert numbers == [2, 3, 2, 2, 3, 2, 2, 3, 3, 2, 2, 3, 3]

    @pytest.mark.anyio
    async def test_a_str_subclass_is_stored_as_its_text_whatever_its_methods_do(
        self, tmp_path: Path
    ) -> None:
        """Only the text of a str subclass is stored, not what its own ``encode`` makes of it
        (a FileJournal wrote that, then refused the snapshot it had saved as corrupted)."""
        async with self.make_journal(tmp_path) as journal:
            await journal.append(
                _Shouting("orders"), [NewEvent(_Shouting("Placed"), 1)], expected_version=0
            )
            await journal.save_snapshot(_Shouting("orders"), 1, {"n": 1})
            read_all = [event async for event in journal.read_all()]
            snapshot = await journal.load_snapshot("orders")
            assert [(e.stream_id, e.type) for e in read_all] == [("orders", "Placed")]
            assert snapshot is not None
            assert (snapshot.stream_id, snapshot.data) == ("orders", {"n": 1})
