"""The snapshot calls of a ``FileJournal``: save, load and compact, through its ``SnapshotIO``.

A part of ``FileJournal`` kept apart, as the journal's module holds its opening, appends and
reads; it uses only the journal's ``_writable_queue``, ``_readable`` and ``_snapshot_io``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._committer import CommitQueue
from ._encoding import check_snapshot_size, encode_data, encode_metadata
from ._exceptions import JournalFailed
from ._file_open import OpenedJournal
from ._snapshot_compaction import SnapshotCompaction
from ._snapshot_io import SnapshotIO, compaction_failed, log_fail_stop, snapshot_failed
from ._types import Snapshot
from ._validation import check_max_version, plain_str, snapshot_version, wanted_metadata
from ._validation import stream_id_bytes as _stream_id_bytes


class SnapshotCalls:
    """``save_snapshot``, ``load_snapshot`` and ``compact_snapshots`` of ``FileJournal``."""

    path: str
    _snapshot_io: SnapshotIO | None
    _writable_queue: Callable[[], CommitQueue]
    _readable: Callable[[], OpenedJournal]

    async def save_snapshot(
        self,
        stream_id: str,
        version: int,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        queue = self._writable_queue()
        stream_bytes = _stream_id_bytes(stream_id)
        version = snapshot_version(stream_id, version, queue.index.version(stream_id))
        encoded_data = encode_data(data, "snapshot data")
        encoded_metadata = encode_metadata(metadata, "snapshot metadata")
        check_snapshot_size(stream_id, stream_bytes, encoded_metadata, encoded_data)
        stream_id = plain_str(stream_id)  # Stored as its text, as its events are.
        assert self._snapshot_io is not None

        def failed(error: OSError) -> None:
            # Logged as a failed append's write or fsync is: every later append fails.
            message = snapshot_failed(error)
            log_fail_stop(self.path, message, already=queue.failed_stop())
            queue.fail(JournalFailed, message, error)

        def compaction_rename_failed(error: OSError) -> None:
            # Logged by the compaction's thread (compact_after_save).
            queue.fail(JournalFailed, compaction_failed(error), error)

        try:
            await self._snapshot_io.save(
                stream_id,
                version,
                encoded_metadata,
                encoded_data,
                failed,
                self._writable_queue,
                compaction_rename_failed,
            )
        except OSError as error:
            raise JournalFailed(snapshot_failed(error)) from error

    async def compact_snapshots(self) -> SnapshotCompaction:
        """Rewrite ``snapshots.dat`` without the snapshots no load needs (see
        docs/journal-format.md, "Compaction"), whether or not it is worth it. Opening, and a
        save that doubled the file, do it on their own when those fill half the file, unless
        the journal was made with ``snapshot_compaction=False``.

        Runs in turn with saves, in their thread; loads go on meanwhile. Raises
        ``SnapshotCompactionFailed`` if it fails before the new file replaced the old one (the
        journal goes on unchanged), ``JournalFailed`` if the rename or the directory sync
        after it fails (the journal fails, as after a failed snapshot write).
        """
        queue = self._writable_queue()
        assert self._snapshot_io is not None

        def failed(error: OSError) -> None:
            message = compaction_failed(error)
            log_fail_stop(self.path, message, already=queue.failed_stop())
            queue.fail(JournalFailed, message, error)

        try:
            return await self._snapshot_io.compact(failed, self._writable_queue)
        except OSError as error:
            raise JournalFailed(compaction_failed(error)) from error

    async def load_snapshot(
        self, stream_id: str, max_version: int | None = None
    ) -> Snapshot | None:
        _stream_id_bytes(stream_id)
        check_max_version(max_version)
        self._readable()
        assert self._snapshot_io is not None
        return await self._snapshot_io.load(stream_id, max_version)

    async def load_snapshot_matching(
        self, stream_id: str, metadata: Mapping[str, Any], max_version: int | None = None
    ) -> Snapshot | None:
        _stream_id_bytes(stream_id)
        check_max_version(max_version)
        wanted = wanted_metadata(metadata)
        self._readable()
        assert self._snapshot_io is not None
        return await self._snapshot_io.load_matching(stream_id, wanted, max_version)
