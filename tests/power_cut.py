"""A power cut, simulated: a ``FileIO`` that records what the journal asks of the file system,
and builds the directories a power cut at any recorded point may leave.

A SIGKILL leaves the page cache alone, so a crash test with real processes never loses a write
that was not synced: it cannot see a missing or misordered sync. ``PowerCutFileIO`` can. The
journal runs on real files (they stand for the page cache: what every later read sees), while
the recorder keeps, in order, every call that changes a file or a directory. ``materialise``
then writes into a fresh directory what the disk may hold after a power cut just before
recorded operation ``cut``, for a ``PowerCut`` that says which unsynced changes persisted.

The model (what Linux ext4 and xfs guarantee for the calls the journal makes):

* **Files.** A file's content is the result of its writes and truncations in call order. Those
  made before a completed ``fsync`` or ``fdatasync`` of the file are durable (``fdatasync``
  covers the data and the size, which is all the journal reads back). A ``pwritev`` with
  ``RWF_DSYNC`` (``FileIO.write_durably``) is durable once the call returns; a cut inside the
  call (recorded as the write, then its completion) leaves it unsynced. Each unsynced write may
  have persisted whole, not at all, or in part: a prefix ending on a 512-byte boundary of the
  file (a torn write; writes within one sector are taken to be atomic), or as zeros over its
  range (the size persisted, the data not). Unsynced writes persist independently of each
  other, in any subset, also across files; an unsynced truncation persisted or not.
* **Names.** Creating a file (``open`` with ``O_CREAT`` of a new name), ``rename``/``replace``
  and ``unlink`` are durable once their directory was fsynced after them; ``fsync`` of a file
  does not make its name durable. Each later one may have persisted or not, independently,
  except that the changes of one name persist in the order they were made (the directory's
  block holds them in that order), and a rename is atomic: the target names the old file or
  the new one, never neither, and the source name goes with it.
* **The journal's directory.** Created by ``FileIO.makedirs``; its name lives in its parent,
  so it is durable once the parent was fsynced after it (POSIX; ext4 and xfs would also
  commit it with the directory's own first sync, which is not counted on). Before that a
  power cut may leave no directory at all, and with it none of its files.

A recording may start from a directory that holds a journal already (what an earlier power
cut left, say): its files are taken to be durable as they are.

Limits: nothing below the file system is modelled (a disk that loses synced writes, reorders
around a flush, or returns garbage in a torn sector; durability.md, "What is not protected");
reads are not recorded (only the snapshot file's go through ``FileIO``); unsynced writes are
torn only at sector boundaries and never persist as stale data; writes outside ``FileIO``
(the ``lock`` file's process id) are not kept; the directory's metadata other than names
(permissions, times) and hard links are not modelled, and all files live in one directory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from journals.testing import FileIO

SECTOR_BYTES = 512
ZEROS = -1
"""A ``PowerCut.writes`` fate: the write's range persisted as zeros."""


@dataclass(frozen=True, slots=True)
class Write:
    """Data written to file ``inode`` at ``offset`` (``data`` None: truncated to ``offset``)."""

    inode: int
    offset: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Sync:
    """``fsync`` or ``fdatasync`` of file ``inode`` returned: its earlier writes are durable."""

    inode: int


@dataclass(frozen=True, slots=True)
class WriteSynced:
    """A ``RWF_DSYNC`` write returned: the write recorded at ``operation`` is durable."""

    operation: int


@dataclass(frozen=True, slots=True)
class Name:
    """A name changed: ``create`` (``target`` now names ``inode``), ``rename`` (``source`` to
    ``target``), ``unlink`` (``source`` is gone) or ``mkdir`` (the journal's directory)."""

    kind: str
    source: str | None
    target: str | None
    inode: int


@dataclass(frozen=True, slots=True)
class DirectorySync:
    """The journal's directory was fsynced: its earlier name changes are durable."""


@dataclass(frozen=True, slots=True)
class ParentSync:
    """The directory holding the journal's directory was fsynced: its creation is durable."""


Operation = Write | Sync | WriteSynced | Name | DirectorySync | ParentSync


@dataclass(frozen=True, slots=True)
class PowerCut:
    """Which unsynced changes of the operations before ``cut`` persisted.

    ``writes``: for an unsynced ``Write``'s index, how many of its bytes persisted (a prefix;
    ``ZEROS``: its range as zeros); one not given did not persist. ``names``: the indexes of the
    unsynced ``Name`` changes that persisted.
    """

    cut: int
    writes: Mapping[int, int]
    names: frozenset[int]
    label: str = ""


@dataclass(frozen=True, slots=True)
class Unsynced:
    """What a cut may lose: unsynced writes (index, write) and name changes, in call order."""

    writes: tuple[tuple[int, Write], ...]
    names: tuple[tuple[int, Name], ...]


class ImpossibleState(Exception):
    """A choice of persisted name changes that no file system leaves (a rename of a name that
    was never created, say)."""


class PowerCutFileIO(FileIO):
    """Records every change the journal in ``directory`` makes; real files stand for the page
    cache. Syncs are recorded, not made: nothing here depends on the real disk's durability.
    """

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = os.path.abspath(directory)
        self.operations: list[Operation] = []
        self._lock = threading.Lock()  # Writes come from the writer and the snapshot threads.
        self._inode_of_name: dict[str, int] = {}
        self._inode_of_fd: dict[int, int] = {}
        # What the directory held before the recording began is durable (the disk's state).
        self._durable: dict[int, bytes] = {}
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        for inode, name in enumerate(names, start=1):
            with open(os.path.join(directory, name), "rb") as file:
                self._durable[inode] = file.read()
            self._inode_of_name[name] = inode
        self._existing = dict(self._inode_of_name)
        self._inodes = len(names)

    def _name(self, path: str) -> str:
        parent, name = os.path.split(os.path.abspath(path))
        assert parent == self.directory, f"{path} is not in the journal's directory"
        return name

    def _record(self, operation: Operation) -> None:
        with self._lock:
            self.operations.append(operation)

    def _new_inode(self) -> int:
        with self._lock:
            self._inodes += 1
            return self._inodes

    def makedirs(self, path: str, mode: int) -> None:
        assert os.path.abspath(path) == self.directory
        existed = os.path.isdir(path)
        super().makedirs(path, mode)
        if not existed:
            self._record(Name("mkdir", None, None, 0))

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        name = self._name(path)
        inode = self._inode_of_name.get(name)
        assert inode is not None or not os.path.lexists(path), f"{name} was made unrecorded"
        fd = super().open(path, flags, mode)
        if inode is None:
            inode = self._new_inode()
            self._inode_of_name[name] = inode
            self._record(Name("create", None, name, inode))
        elif flags & os.O_TRUNC:
            self._record(Write(inode, 0, None))
        self._inode_of_fd[fd] = inode
        return fd

    def close(self, fd: int) -> None:
        self._inode_of_fd.pop(fd, None)
        super().close(fd)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        count = os.pwrite(fd, data, offset)
        self._record(Write(self._inode_of_fd[fd], offset, bytes(data[:count])))
        return count

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        # The one call of ``pwritev(..., RWF_DSYNC)``: the write, then its completion.
        with self._lock:
            self.operations.append(Write(self._inode_of_fd[fd], offset, bytes(data)))
            written = len(self.operations) - 1
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.pwrite(fd, view[done:], offset + done)
        self._record(WriteSynced(written))

    def fdatasync(self, fd: int) -> None:
        self._record(Sync(self._inode_of_fd[fd]))

    def fsync(self, fd: int) -> None:
        self._record(Sync(self._inode_of_fd[fd]))

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)
        self._record(Write(self._inode_of_fd[fd], size, None))

    def fsync_directory(self, path: str) -> None:
        if os.path.abspath(path) == os.path.dirname(self.directory):
            self._record(ParentSync())
            return
        assert os.path.abspath(path) == self.directory
        self._record(DirectorySync())

    def replace(self, source: str, target: str) -> None:
        source_name, target_name = self._name(source), self._name(target)
        os.replace(source, target)
        inode = self._inode_of_name.pop(source_name)
        self._inode_of_name[target_name] = inode
        self._record(Name("rename", source_name, target_name, inode))

    def remove(self, path: str) -> None:
        name = self._name(path)
        os.remove(path)
        inode = self._inode_of_name.pop(name)
        self._record(Name("unlink", name, None, inode))

    # -- what a power cut leaves ---------------------------------------------------------------

    def unsynced(self, cut: int) -> Unsynced:
        """What the operations before ``cut`` left unsynced."""
        operations = self.operations[:cut]
        synced_writes: set[int] = set()
        last_sync: dict[int, int] = {}
        last_directory_sync = last_parent_sync = -1
        for index, operation in enumerate(operations):
            if isinstance(operation, Sync):
                last_sync[operation.inode] = index
            elif isinstance(operation, WriteSynced):
                synced_writes.add(operation.operation)
            elif isinstance(operation, DirectorySync):
                last_directory_sync = index
            elif isinstance(operation, ParentSync):
                last_parent_sync = index
        writes = tuple(
            (index, operation)
            for index, operation in enumerate(operations)
            if isinstance(operation, Write)
            and index not in synced_writes
            and index > last_sync.get(operation.inode, -1)
        )
        names = tuple(
            (index, operation)
            for index, operation in enumerate(operations)
            if isinstance(operation, Name)
            and index > (last_parent_sync if operation.kind == "mkdir" else last_directory_sync)
        )
        return Unsynced(writes, names)

    def power_cuts(self, cut: int) -> Iterator[PowerCut]:
        """A systematic set of states for a cut before operation ``cut``: none of the unsynced
        changes, all of them, each prefix of the writes in call order, and each such prefix
        with its last write torn at a sector boundary or zeroed; the name changes likewise
        (none, all, each prefix), each with all the writes and with none of them."""
        unsynced = self.unsynced(cut)
        every_name = frozenset(index for index, _ in unsynced.names)
        writes = [(index, write) for index, write in unsynced.writes]
        for count in range(len(writes) + 1):
            kept = {index: _length(write) for index, write in writes[:count]}
            yield PowerCut(cut, kept, every_name, f"first {count} writes")
            yield PowerCut(cut, kept, frozenset(), f"first {count} writes, no names")
            if count == 0:
                continue
            index, last = writes[count - 1]
            for torn in _tears(last):
                yield PowerCut(cut, {**kept, index: torn}, every_name, f"first {count}, torn")
            if last.data:
                yield PowerCut(cut, {**kept, index: ZEROS}, every_name, f"first {count}, zeros")
        every_write = {index: _length(write) for index, write in writes}
        names = [index for index, _ in unsynced.names]
        for count in range(1, len(names)):
            for kept_writes in (every_write, {}):
                yield PowerCut(
                    cut, kept_writes, frozenset(names[:count]), f"first {count} name changes"
                )

    def files(self, power_cut: PowerCut) -> dict[str, bytes] | None:
        """The files (name: content) of the directory ``power_cut`` leaves; None when it leaves
        no journal directory at all.

        Raises ``ImpossibleState`` for a choice of name changes no file system leaves.
        """
        operations = self.operations[: power_cut.cut]
        unsynced = self.unsynced(power_cut.cut)
        lost_writes = {index for index, _ in unsynced.writes} - set(power_cut.writes)
        lost_names = {index for index, _ in unsynced.names} - power_cut.names
        _check_name_order(unsynced.names, power_cut.names)
        contents = {inode: bytearray(data) for inode, data in self._durable.items()}
        names = dict(self._existing)
        # A directory that existed before the recording began is durable.
        directory = not any(isinstance(op, Name) and op.kind == "mkdir" for op in self.operations)
        for index, operation in enumerate(operations):
            if isinstance(operation, Write) and index not in lost_writes:
                content = contents.setdefault(operation.inode, bytearray())
                _apply(content, operation, power_cut.writes.get(index))
            elif isinstance(operation, Name) and index not in lost_names:
                if operation.kind == "mkdir":
                    directory = True
                else:
                    _rename(names, operation)
        if not directory:
            return None  # Its files, if any persisted, are reachable by no name.
        return {name: bytes(contents.get(inode, b"")) for name, inode in names.items()}

    def materialise(self, power_cut: PowerCut, target: str) -> bool:
        """Write into ``target`` (which must not exist) the directory ``power_cut`` leaves;
        answer False when it leaves no journal directory at all (``target`` is not made)."""
        files = self.files(power_cut)
        if files is None:
            return False
        write_directory(files, target)
        return True


def write_directory(files: Mapping[str, bytes], target: str) -> None:
    """Make ``target`` (0700) holding ``files`` (name: content)."""
    os.makedirs(target, mode=0o700)
    for name, content in files.items():
        with open(os.path.join(target, name), "wb") as file:
            file.write(content)


def fates(write: Write) -> list[int]:
    """What of an unsynced ``write`` may persist, as ``PowerCut.writes`` values: nothing (0),
    all of it, a prefix up to each place it may tear, or zeros over its range."""
    if write.data is None:
        return [0, 1]
    return [0, len(write.data), *_tears(write), *([ZEROS] if write.data else [])]


def _length(write: Write) -> int:
    return 1 if write.data is None else len(write.data)


def _tears(write: Write) -> list[int]:
    """Where a write may tear: the sector boundaries of the file strictly inside it (at most
    three of them: the first, one in the middle, the last), as byte counts of its prefix."""
    if write.data is None:
        return []
    end = write.offset + len(write.data)
    first = (write.offset // SECTOR_BYTES + 1) * SECTOR_BYTES
    boundaries = list(range(first, end, SECTOR_BYTES))
    if len(boundaries) > 3:
        boundaries = [boundaries[0], boundaries[len(boundaries) // 2], boundaries[-1]]
    return [boundary - write.offset for boundary in boundaries]


def _apply(content: bytearray, write: Write, fate: int | None) -> None:
    if write.data is None:
        del content[write.offset :]
        content.extend(bytes(max(0, write.offset - len(content))))
        return
    data = write.data
    if fate == ZEROS:
        data = bytes(len(data))
    elif fate is not None:
        data = data[:fate]
    end = write.offset + len(data)
    content.extend(bytes(max(0, end - len(content))))
    content[write.offset : end] = data


def _rename(names: dict[str, int], change: Name) -> None:
    if change.kind == "create":
        assert change.target is not None
        names[change.target] = change.inode
        return
    assert change.source is not None
    if names.get(change.source) != change.inode:
        raise ImpossibleState(f"{change.kind} of {change.source}, which does not name that file")
    del names[change.source]
    if change.kind == "rename":
        assert change.target is not None
        names[change.target] = change.inode


def _check_name_order(unsynced: tuple[tuple[int, Name], ...], persisted: frozenset[int]) -> None:
    """The changes of one name persist in the order they were made: refuse a later change of a
    name that persisted while an earlier one was lost."""
    lost: set[str] = set()
    for index, change in unsynced:
        touched = {name for name in (change.source, change.target) if name is not None}
        if index in persisted:
            if touched & lost:
                raise ImpossibleState(
                    f"a change of {sorted(touched & lost)} persisted out of order"
                )
        else:
            lost |= touched
