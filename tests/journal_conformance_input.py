"""What the journal contract takes from callers and what it refuses, the same on every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio: stream ids that are str subclasses.
"""

from __future__ import annotations

import abc
import enum
from pathlib import Path

import pytest

from journals import Journal, NewEvent


class Stream(enum.StrEnum):
    ORDERS = "orders"


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
