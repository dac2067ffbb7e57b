"""The journal index's memory per event, as the scenarios report it."""

from __future__ import annotations

from journals import FileJournal


def index_bytes_per_event(journal: FileJournal) -> float:
    """Bytes of index memory per event of an open ``journal``, walked stream by stream.

    ``statistics().index_bytes_per_event`` is counted from sizes the index keeps, without the
    spare room each stream's array keeps to grow (a read of the figures must not walk a
    million streams). The benchmarks report what the index holds, spare room included: they
    walk it, outside every timed part.
    """
    opened = journal._opened  # Private: a measurement of the journal's own structure.
    if opened is None:
        raise RuntimeError("the journal's index is measured while the journal is open")
    index = opened.index
    return index.nbytes_walked() / index.head_position if index.head_position else 0.0
