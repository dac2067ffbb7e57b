"""What a durable FileJournal syncs, and when: seen through a FileIO that records its calls.

A crash loses what was not synced, so the order of the syncs is part of the durability
contract (journal-format.md, "Directory"; durability.md): a new segment's header is synced
before its name is made durable by a directory sync, and both before an append written to that
segment is acknowledged; a torn tail cut on open is synced before the journal can append.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from journals import FileJournal, JournalFailed, NewEvent
from journals.testing import FileIO

from .journal_files import without_clean_close

SEGMENT_BYTES_MAX = 4096
FIRST_SEGMENT = "00000000000000000001.log"
SNAPSHOTS = "snapshots.dat"
DIRECTORY = "<directory>"
"""How the recorded calls name the journal's directory (its fsync)."""


class RecordingFileIO(FileIO):
    """Records (call, file name) for each call that changes or syncs a file.

    The test adds its own entries (an acknowledged append, the end of opening) to the same
    list, so their order against the journal's calls shows what was durable by then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self._names: dict[int, str] = {}

    def _note(self, call: str, fd: int) -> None:
        name = self._names.get(fd)
        if name is not None:  # Not a directory's fd (fsync_directory notes those).
            self.calls.append((call, name))

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        fd = super().open(path, flags, mode)
        self._names[fd] = os.path.basename(path)
        self.calls.append(("open", self._names[fd]))
        return fd

    def close(self, fd: int) -> None:
        self._names.pop(fd, None)
        super().close(fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self._note("pwrite", fd)
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        self._note("fdatasync", fd)

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self._note("fsync", fd)

    def ftruncate(self, fd: int, size: int) -> None:
        super().ftruncate(fd, size)
        self._note("ftruncate", fd)

    def fsync_directory(self, path: str) -> None:
        super().fsync_directory(path)
        self.calls.append(("fsync_directory", DIRECTORY))

    def replace(self, source: str, target: str) -> None:
        super().replace(source, target)
        self.calls.append(("replace", os.path.basename(target)))

    def remove(self, path: str) -> None:
        super().remove(path)
        self.calls.append(("remove", os.path.basename(path)))

    def of(self, name: str, *, start: int = 0, end: int | None = None) -> list[tuple[str, str]]:
        """The calls on ``name`` and on the directory, from ``start`` up to ``end``."""
        return [call for call in self.calls[start:end] if call[1] in (name, DIRECTORY)]


def _event(index: int) -> list[NewEvent]:
    return [NewEvent("E", {"i": index, "pad": "x" * 300})]


def _segment_names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.log"))


@pytest.mark.anyio
async def test_a_new_journals_first_segment_is_synced_then_its_name(tmp_path: Path) -> None:
    io = RecordingFileIO()
    async with FileJournal(tmp_path, file_io=io):
        io.calls.append(("opened", ""))
    opened = io.calls.index(("opened", ""))
    assert io.of(FIRST_SEGMENT, end=opened)[:4] == [
        ("open", FIRST_SEGMENT),
        ("pwrite", FIRST_SEGMENT),  # The header...
        ("fsync", FIRST_SEGMENT),  # ...synced before the name is made durable.
        ("fsync_directory", DIRECTORY),
    ]


@pytest.mark.anyio
async def test_a_rolled_segment_is_durable_before_an_append_to_it_is_acknowledged(
    tmp_path: Path,
) -> None:
    io = RecordingFileIO()
    async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as journal:
        for index in range(100):
            result = await journal.append("s", _event(index), expected_version=None)
            io.calls.append(("acknowledged", str(result.position)))
            if len(_segment_names(tmp_path)) == 2:
                break
    new = _segment_names(tmp_path)[1]
    first_position = str(int(new[:20]))
    created = io.calls.index(("open", new))
    acknowledged = io.calls.index(("acknowledged", first_position))
    assert created < acknowledged
    assert io.of(new, start=created, end=acknowledged) == [
        ("open", new),
        ("pwrite", new),  # The header, synced...
        ("fsync", new),
        ("fsync_directory", DIRECTORY),  # ...then the new name: both before the batch.
        ("pwrite", new),
        ("fdatasync", new),
    ]


class FailingDirectorySync(FileIO):
    """A FileIO whose directory syncs fail with EIO once ``failing`` is set."""

    failing = False

    def fsync_directory(self, path: str) -> None:
        if self.failing:
            raise OSError(errno.EIO, "Input/output error (simulated directory fsync failure)")
        super().fsync_directory(path)


@pytest.mark.anyio
async def test_a_failed_directory_sync_while_rolling_fails_the_journal(tmp_path: Path) -> None:
    io = FailingDirectorySync()
    acknowledged: list[int] = []
    failure: JournalFailed | None = None
    async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as journal:
        io.failing = True  # Only a roll syncs the directory from here on.
        for index in range(100):
            try:
                await journal.append("s", _event(index), expected_version=None)
            except JournalFailed as error:
                failure = error
                break
            acknowledged.append(index)
        assert failure is not None, "no append failed, though the roll could not sync"
        assert isinstance(failure.__cause__, OSError)
        assert failure.__cause__.errno == errno.EIO
        assert len(_segment_names(tmp_path)) == 2  # It failed in the roll.
        with pytest.raises(JournalFailed):
            await journal.append("s", _event(-1), expected_version=None)
    async with FileJournal(tmp_path, segment_bytes_max=SEGMENT_BYTES_MAX) as reopened:
        found = [event.data["i"] async for event in reopened.read("s")]
    assert found == acknowledged  # The failed append was never written to the new segment.


@pytest.mark.anyio
async def test_a_torn_tail_is_cut_and_synced_before_the_journal_opens(tmp_path: Path) -> None:
    async with FileJournal(tmp_path) as journal:
        for index in range(3):
            await journal.append("s", _event(index), expected_version=None)
    without_clean_close(tmp_path)  # A crash: the bytes below stand for a torn write.
    segment = tmp_path / FIRST_SEGMENT
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x05" * 10)
    io = RecordingFileIO()
    async with FileJournal(tmp_path, file_io=io) as journal:
        io.calls.append(("opened", ""))
        [tail] = journal.recovery_report.torn_tails
        assert (tail.path, tail.offset, tail.bytes_cut) == (str(segment), size, 10)
    assert segment.stat().st_size == size
    opened = io.calls.index(("opened", ""))
    calls = io.of(FIRST_SEGMENT, end=opened)
    cut = calls.index(("ftruncate", FIRST_SEGMENT))
    assert {("fsync", FIRST_SEGMENT), ("fdatasync", FIRST_SEGMENT)} & set(calls[cut + 1 :])


RECORD = "closed-cleanly"


@pytest.mark.anyio
async def test_the_clean_close_record_is_synced_then_renamed_then_its_name_synced(
    tmp_path: Path,
) -> None:
    # Written last by a close: a record lost to a crash makes the next open treat the end as
    # after a crash; one not whole under its name would be no record at all.
    io = RecordingFileIO()
    async with FileJournal(tmp_path, file_io=io) as journal:
        await journal.append("s", _event(0), expected_version=None)
        io.calls.append(("closing", ""))
    closing = io.calls.index(("closing", ""))
    calls = [call for call in io.calls[closing:] if call[1] in (f"{RECORD}.tmp", RECORD)]
    assert calls == [
        ("open", f"{RECORD}.tmp"),
        ("pwrite", f"{RECORD}.tmp"),
        ("fsync", f"{RECORD}.tmp"),
        ("replace", RECORD),
    ]
    assert io.calls[-1] == ("fsync_directory", DIRECTORY)


@pytest.mark.anyio
@pytest.mark.parametrize("durable", [True, False])
async def test_the_clean_close_record_is_removed_durably_before_the_journal_opens(
    tmp_path: Path, durable: bool
) -> None:
    # Were the removal lost to a crash and later appends not, the record would call the grown
    # journal damaged: so it is synced even by a journal that does not sync its appends.
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", _event(0), expected_version=None)
    assert (tmp_path / RECORD).exists()
    io = RecordingFileIO()
    async with FileJournal(tmp_path, file_io=io, durable=durable) as journal:
        io.calls.append(("opened", ""))
        assert not (tmp_path / RECORD).exists()
    calls = io.of(RECORD, end=io.calls.index(("opened", "")))
    removed = calls.index(("remove", RECORD))
    assert ("fsync_directory", DIRECTORY) in calls[removed + 1 :]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ended", "durable", "synced"),
    [
        ("crash", True, True),  # What a crash left may not be on the disk yet.
        ("clean", True, False),  # A clean close synced all it wrote: opening is not slowed.
        ("crash", False, False),  # A journal that does not sync never does.
    ],
)
async def test_only_an_open_after_a_crash_syncs_the_snapshots_the_last_segment_and_its_name(
    tmp_path: Path, ended: str, durable: bool, synced: bool
) -> None:
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", _event(0), expected_version=None)
        await journal.save_snapshot("s", 1, {"i": 0})
    if ended == "crash":
        without_clean_close(tmp_path)
    io = RecordingFileIO()
    async with FileJournal(tmp_path, file_io=io, durable=durable):
        io.calls.append(("opened", ""))
    opened = io.calls.index(("opened", ""))
    syncs = [call for call in io.of(FIRST_SEGMENT, end=opened) if call[0] != "open"]
    snapshot_syncs = [call for call in io.of(SNAPSHOTS, end=opened) if "sync" in call[0]]
    if synced:
        assert syncs[-2:] == [("fdatasync", FIRST_SEGMENT), ("fsync_directory", DIRECTORY)]
        assert ("fdatasync", SNAPSHOTS) in snapshot_syncs
    else:
        assert ("fdatasync", FIRST_SEGMENT) not in syncs
        assert ("fsync", FIRST_SEGMENT) not in syncs
        assert [call for call in snapshot_syncs if call[1] == SNAPSHOTS] == []


class _FailingSync(FileIO):
    """Fails the sync named by ``failing`` with an EIO that names no file, as the kernel's
    does for a call on a file descriptor."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def fdatasync(self, fd: int) -> None:
        if self.failing in ("segment", "snapshots"):
            raise OSError(errno.EIO, "Input/output error")
        super().fdatasync(fd)

    def fsync_directory(self, path: str) -> None:
        if self.failing == "directory":
            raise OSError(errno.EIO, "Input/output error")
        super().fsync_directory(path)


@pytest.mark.anyio
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("failing", ["snapshots", "segment", "directory"])
async def test_a_failed_sync_of_what_a_crash_left_names_the_file_and_leaks_nothing(
    tmp_path: Path, failing: str
) -> None:
    async with FileJournal(tmp_path) as journal:
        await journal.append("s", _event(0), expected_version=None)
        if failing == "snapshots":  # Synced first, when the file holds any.
            await journal.save_snapshot("s", 1, {"i": 0})
    without_clean_close(tmp_path)
    named = {
        "snapshots": str(tmp_path / "snapshots.dat"),
        "segment": str(tmp_path / FIRST_SEGMENT),
        "directory": str(tmp_path),
    }[failing]
    descriptors = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="Input/output error") as caught:
        async with FileJournal(tmp_path, file_io=_FailingSync(failing)):
            pytest.fail("opened although the sync of what the crash left failed")
    assert (caught.value.errno, caught.value.filename) == (errno.EIO, named)
    assert set(os.listdir("/proc/self/fd")) <= descriptors
    async with FileJournal(tmp_path) as journal:  # Nothing was left locked or changed.
        assert await journal.stream_version("s") == 1
