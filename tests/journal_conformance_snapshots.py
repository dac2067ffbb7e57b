"""The journal contract's snapshot rules, part of the suite run against every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio: every backend refuses the same snapshots, with the same errors, before writing anything.
"""

from __future__ import annotations

import abc
import datetime
import math
import uuid
from pathlib import Path

import anyio
import orjson
import pytest

from journals import EventEncodingError, InvalidStreamId, Journal, NewEvent
from journals._codec import RECORD_BODY_BYTES_MAX, SNAPSHOT_HEADER_BYTES


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
    async def test_a_save_cancelled_before_it_began_stores_nothing(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            await journal.save_snapshot("s", 1, {"saved": True})
            with anyio.CancelScope() as scope:
                scope.cancel()
                await journal.save_snapshot("s", 1, {"cancelled": True})
            assert scope.cancelled_caught
            snapshot = await journal.load_snapshot("s")
            assert snapshot is not None
            assert snapshot.data == {"saved": True}

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

    @pytest.mark.anyio
    async def test_a_snapshot_larger_than_one_record_is_refused_before_anything_is_written(
        self, tmp_path: Path
    ) -> None:
        # A snapshot is one record: header, stream id, metadata and data.
        room = RECORD_BODY_BYTES_MAX - SNAPSHOT_HEADER_BYTES - len(b"s")
        metadata = {"note": "m" * 1000}
        data_bytes_max = room - len(orjson.dumps(metadata))
        fits = "x" * (data_bytes_max - 2)  # A JSON string: two quotes more.
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1), NewEvent("E", 2)], expected_version=0)
            with pytest.raises(
                EventEncodingError,
                match=rf"stream 's' is too large: its data and metadata are {room + 1:,} bytes .*"
                rf"holds at most {room:,} of them \({RECORD_BODY_BYTES_MAX:,} bytes in all\)\. "
                rf"Nothing was written",
            ):
                await journal.save_snapshot("s", 1, fits + "x", metadata)
            assert await journal.load_snapshot("s") is None
            await journal.save_snapshot("s", 2, fits, metadata)
            snapshot = await journal.load_snapshot("s")
            assert snapshot is not None
            assert (snapshot.version, len(snapshot.data), snapshot.metadata) == (
                2,
                len(fits),
                metadata,
            )

    @pytest.mark.anyio
    async def test_a_snapshot_is_what_was_saved_whatever_its_saver_or_loader_changes(
        self, tmp_path: Path
    ) -> None:
        # The runtime's default decode_state hands the loaded data to the entity as its state:
        # a state changed in place must not change the next load (after passivation, say).
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            state, metadata = {"items": [1]}, {"tags": ["a"]}
            await journal.save_snapshot("s", 1, state, metadata)
            state["items"].append(2)
            metadata["tags"].append("b")
            first = await journal.load_snapshot("s")
            assert first is not None
            first.data["items"].append(3)
            first.metadata["tags"].append("c")
            second = await journal.load_snapshot("s")
            assert second is not None
            assert (second.data, dict(second.metadata)) == ({"items": [1]}, {"tags": ["a"]})

    @pytest.mark.anyio
    async def test_the_latest_snapshot_whose_metadata_matches_is_found_behind_newer_ones(
        self, tmp_path: Path
    ) -> None:
        # Snapshots of schema 1, then of schema 2 (a deploy that bumped it), then of schema 1
        # again at a version schema 2 had (the deploy rolled back).
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", n) for n in range(10)], expected_version=0)
            for version, schema in ((2, 1), (4, 1), (5, 2), (6, 2), (8, 2), (6, 1)):
                await journal.save_snapshot(
                    "s", version, {"at": version, "schema": schema}, {"k": "a", "schema": schema}
                )

            async def found(metadata: dict[str, object], max_version: int | None) -> object:
                snapshot = await journal.load_snapshot_matching("s", metadata, max_version)
                if snapshot is None:
                    return None
                assert snapshot.stream_id == "s"
                assert snapshot.data == {
                    "at": snapshot.version,
                    "schema": snapshot.metadata["schema"],
                }
                return snapshot.version, dict(snapshot.metadata)

            one = {"k": "a", "schema": 1}
            two = {"k": "a", "schema": 2}
            assert await found({"schema": 1}, None) == (6, one)
            assert await found(one, 5) == (4, one)
            assert await found(one, 3) == (2, one)
            assert await found(one, 1) is None
            assert await found(two, None) == (8, two)
            # At version 6 the last saved is of schema 1: it is the one a load answers there.
            assert await found(two, 7) == (5, two)
            assert await found({}, 7) == (6, one)
            assert await found({"schema": 3}, None) is None
            assert await found({"k": "b"}, None) is None
            assert await found({"schema": 1, "missing": None}, None) is None
            assert await journal.load_snapshot_matching("other", one) is None

    @pytest.mark.anyio
    async def test_a_lookup_by_metadata_checks_its_arguments(self, tmp_path: Path) -> None:
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            await journal.save_snapshot("s", 1, {}, {"schema": 1})
            with pytest.raises(TypeError, match=r"a mapping of keys to values.*not list"):
                await journal.load_snapshot_matching("s", [("schema", 1)])  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="max_version is a stream version"):
                await journal.load_snapshot_matching("s", {"schema": 1}, 1.5)  # type: ignore[arg-type]
            with pytest.raises(InvalidStreamId):
                await journal.load_snapshot_matching("", {"schema": 1})
            # A value no snapshot can hold is refused, not looked for in vain.
            with pytest.raises(ValueError, match=r"cannot be stored as JSON.*bytes"):
                await journal.load_snapshot_matching("s", {"schema": b"1"})
            with pytest.raises(ValueError, match=r"non-finite float.*nan"):
                await journal.load_snapshot_matching("s", {"schema": math.nan})

    @pytest.mark.anyio
    async def test_a_lookup_by_metadata_finds_values_stored_in_their_json_form(
        self, tmp_path: Path
    ) -> None:
        # A save stores a tuple as a list, a UUID or a datetime as a string: the same metadata
        # given to a lookup is the metadata of that snapshot.
        metadata = {
            "build": uuid.UUID(int=7),
            "at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            "schema": (2, 1),
        }
        async with self.make_journal(tmp_path) as journal:
            await journal.append("s", [NewEvent("E", 1)], expected_version=0)
            await journal.save_snapshot("s", 1, {"at": 1}, metadata)
            found = await journal.load_snapshot_matching("s", metadata)
            assert found is not None
            assert found.data == {"at": 1}
            assert await journal.load_snapshot_matching("s", {"schema": [2, 1]}) == found
            assert await journal.load_snapshot_matching("s", {"schema": (1, 2)}) is None
