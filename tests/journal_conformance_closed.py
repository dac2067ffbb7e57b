"""Reads of a journal that is not open, the same on every backend.

``JournalConformance`` inherits these tests, so they run against every backend on asyncio and
trio. A journal answers reads only between entering it and closing it: before and after, every
read raises ``JournalClosed``, so code written against ``MemoryJournal`` behaves the same on
disk. ``statistics()`` answers throughout.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from journals import InvalidStreamId, Journal, JournalClosed, NewEvent


async def _listed(iterator: object) -> list[object]:
    return [item async for item in iterator]  # type: ignore[attr-defined]


READS: dict[str, Callable[[Journal], Awaitable[object]]] = {
    "head_position": lambda journal: journal.head_position(),
    "stream_version": lambda journal: journal.stream_version("s"),
    "read": lambda journal: _listed(journal.read("s")),
    "read_all": lambda journal: _listed(journal.read_all()),
    "read_chunks": lambda journal: _listed(journal.read_chunks("s")),
    "read_chunk": lambda journal: journal.read_chunk("s"),
    "load_snapshot": lambda journal: journal.load_snapshot("s"),
    "load_snapshot_matching": lambda journal: journal.load_snapshot_matching("s", {}),
}

LONG_READ_EVENTS = 9000
"""More events than one chunk of any backend's reads holds (FileJournal's: 8,192)."""


class ClosedConformance(abc.ABC):
    """Reads of a journal not open against a backend (see the module)."""

    @abc.abstractmethod
    def make_journal(self, directory: Path) -> Journal:
        """A new, not yet opened journal kept in ``directory`` (ignored by memory backends)."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("read", READS)
    async def test_reads_before_opening_and_after_closing_raise_journal_closed(
        self, tmp_path: Path, read: str
    ) -> None:
        journal = self.make_journal(tmp_path)
        with pytest.raises(JournalClosed, match=r"closed \(or not opened\); reads need it open"):
            await READS[read](journal)
        assert journal.statistics().events == 0
        async with journal:
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)
            await journal.save_snapshot("s", 1, {"state": 1})
            assert await READS[read](journal) not in (None, 0, [])
        with pytest.raises(JournalClosed, match=r"closed \(or not opened\); reads need it open"):
            await READS[read](journal)
        assert (journal.statistics().events, journal.statistics().appends) == (1, 1)

    @pytest.mark.anyio
    @pytest.mark.parametrize("read", ["read", "read_chunks", "read_chunk"])
    async def test_an_invalid_stream_id_is_named_first_by_every_stream_read(
        self, tmp_path: Path, read: str
    ) -> None:
        # Whatever else is wrong (a journal not open, a version out of range), an id no
        # journal holds is what the error names, on every backend.
        calls: dict[str, Callable[[Journal, int], Awaitable[object]]] = {
            "read": lambda journal, version: _listed(journal.read("", version)),
            "read_chunks": lambda journal, version: _listed(journal.read_chunks("", version)),
            "read_chunk": lambda journal, version: journal.read_chunk("", version),
        }
        journal = self.make_journal(tmp_path)
        for version in (1, 0):
            with pytest.raises(InvalidStreamId):
                await calls[read](journal, version)
        async with journal:
            with pytest.raises(InvalidStreamId):
                await calls[read](journal, 0)

    @pytest.mark.anyio
    async def test_appends_before_opening_and_after_closing_say_the_same_on_every_backend(
        self, tmp_path: Path
    ) -> None:
        # One message on every backend: a test that matches it on one passes on the others.
        journal = self.make_journal(tmp_path)
        expected = r"closed \(or was never opened with 'async with'\); no more appends"
        with pytest.raises(JournalClosed, match=expected):
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)
        async with journal:
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)
        with pytest.raises(JournalClosed, match=expected):
            await journal.append("s", [NewEvent("T", 2)], expected_version=1)
        with pytest.raises(JournalClosed, match=expected):
            await journal.save_snapshot("s", 1, {"state": 1})

    @pytest.mark.anyio
    @pytest.mark.parametrize("read", ["read", "read_all"])
    async def test_a_read_under_way_when_the_journal_closes_raises_journal_closed(
        self, tmp_path: Path, read: str
    ) -> None:
        journal = self.make_journal(tmp_path)
        async with journal:
            payloads = [NewEvent("T", index) for index in range(LONG_READ_EVENTS)]
            await journal.append("s", payloads, expected_version=0)
            events = journal.read("s") if read == "read" else journal.read_all()
            first = await events.__anext__()
            assert first.data == 0
        with pytest.raises(JournalClosed, match="closed during the read") as caught:
            async for _ in events:
                pass
        # What to do, not only what happened.
        assert "close the journal only once the tasks that read it have ended" in str(caught.value)

    @pytest.mark.anyio
    async def test_a_journal_is_entered_once_and_a_closed_one_stays_closed(
        self, tmp_path: Path
    ) -> None:
        # Refused in the same words on every backend. A journal closed before it was ever
        # entered is closed too: entering it opened it, and its close was spent already.
        closed_early = self.make_journal(tmp_path)
        await closed_early.aclose()
        with pytest.raises(JournalClosed, match="was closed; create a new one"):
            await closed_early.__aenter__()
        assert closed_early.statistics().events == 0
        journal = self.make_journal(tmp_path)  # The same files: nothing of the first holds them.
        async with journal:
            with pytest.raises(JournalClosed, match="is open already; enter it once and share"):
                await journal.__aenter__()
            await journal.append("s", [NewEvent("T", 1)], expected_version=0)
        with pytest.raises(JournalClosed, match="was closed; create a new one"):
            await journal.__aenter__()
        with pytest.raises(JournalClosed, match=r"closed \(or not opened\); reads need it open"):
            await journal.head_position()
