"""FileJournal against the journal contract (the suite shared by every backend)."""

from __future__ import annotations

from pathlib import Path

from journals import FileJournal, Journal

from .journal_conformance import JournalConformance


class TestFileJournalConformance(JournalConformance):
    def make_journal(self, directory: Path) -> Journal:
        return FileJournal(directory / "journal")
