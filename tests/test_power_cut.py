"""Power cuts, simulated: a durable FileJournal keeps what it acknowledged.

A random workload (appends of one and of several events to several streams, concurrent appends
that share a batch, segment rolls, snapshot saves, a compaction of the snapshot file, a close
and a reopening) runs on ``PowerCutFileIO`` (``tests/power_cut.py``, which states the model).
Then, for sampled points of its recorded calls and sampled choices of what the unsynced changes
left on the disk, the directory a power cut would leave is built and opened with a plain
FileJournal. Opening must succeed; every acknowledged append must be there, whole, at the
version and position it was acknowledged with; besides them only whole appends that were
written may be there, each where it was written; versions and positions are gapless;
``verify_journal`` reports no damage (a torn tail is a note); each stream's newest snapshot is
one that was saved, at or above the newest acknowledged save, at a version the stream has; and
the journal takes an append afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journals import FileJournal, NewEvent, verify_journal
from journals import _snapshot_retention as retention

from .examples import examples
from .journal_doubles import UnsyncedFileIO
from .power_cut import (
    ImpossibleState,
    Name,
    PowerCut,
    PowerCutFileIO,
    fates,
    write_directory,
)

SEGMENT_BYTES_MAX = 4096
STREAMS = ("a", "b", "c")
PAD_BYTES = (8, 700)
"""Small events, and events large enough that a batch spans sectors and segments roll."""


@dataclass
class Append:
    """One append of the workload: its events' data, and when and where it was acknowledged."""

    number: int
    stream: str
    events: list[dict[str, Any]]
    acknowledged_at: int = -1  # The number of recorded operations by the acknowledgement.
    version: int = 0  # Of its first event, as acknowledged.
    position: int = 0


@dataclass
class Saved:
    """One snapshot save, and when it was acknowledged."""

    stream: str
    version: int
    acknowledged_at: int = -1


@dataclass
class History:
    appends: list[Append] = field(default_factory=list)
    saves: list[Saved] = field(default_factory=list)


Step = tuple[str, Any]


steps = st.one_of(
    st.tuples(
        st.just("append"),
        st.tuples(st.sampled_from(STREAMS), st.integers(1, 3), st.sampled_from(PAD_BYTES)),
    ),
    st.tuples(st.just("concurrent"), st.sampled_from(PAD_BYTES)),
    st.tuples(st.just("snapshot"), st.sampled_from(STREAMS)),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
)


async def _append(
    journal: FileJournal, io: PowerCutFileIO, history: History, stream: str, count: int, pad: int
) -> None:
    append = Append(len(history.appends), stream, [])
    append.events = [{"a": append.number, "k": k, "pad": "x" * pad} for k in range(count)]
    history.appends.append(append)
    result = await journal.append(
        stream, [NewEvent("E", data) for data in append.events], expected_version=None
    )
    append.acknowledged_at = len(io.operations)
    append.version = result.version - count + 1
    append.position = result.position - count + 1


async def _run(
    directory: str, io: PowerCutFileIO, workload: list[Step], history: History | None = None
) -> History:
    """Run ``workload`` on a journal in ``directory``; answer ``history`` (a new one if None)
    with what it appended and saved."""
    history = History() if history is None else history
    journal = FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io)
    await journal.__aenter__()
    try:
        for kind, argument in workload:
            if kind == "append":
                await _append(journal, io, history, *argument)
            elif kind == "concurrent":
                async with anyio.create_task_group() as group:
                    for stream in STREAMS:
                        group.start_soon(_append, journal, io, history, stream, 2, argument)
            elif kind == "snapshot":
                version = await journal.stream_version(argument)
                if version:
                    saved = Saved(argument, version)
                    history.saves.append(saved)
                    await journal.save_snapshot(argument, version, _snapshot_data(saved))
                    saved.acknowledged_at = len(io.operations)
            elif kind == "compact":
                await journal.compact_snapshots()
            else:
                await journal.aclose()
                journal = FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io)
                await journal.__aenter__()
    finally:
        await journal.aclose()
    return history


def _snapshot_data(saved: Saved) -> dict[str, Any]:
    return {"stream": saved.stream, "version": saved.version}


async def _check(directory: str, history: History, cut: int) -> None:
    """Open what the power cut left and hold it to the contract (see the module docstring)."""
    io = UnsyncedFileIO()
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as journal:
        events = [event async for event in journal.read_all()]
        assert [event.position for event in events] == list(range(1, len(events) + 1))
        found: list[int] = []
        offset = 0
        while offset < len(events):
            append = history.appends[events[offset].data["a"]]
            whole = events[offset : offset + len(append.events)]
            assert [event.data for event in whole] == append.events, "not a whole append"
            assert all(event.stream_id == append.stream for event in whole)
            assert whole[0].position == append.position
            assert whole[0].version == append.version
            found.append(append.number)
            offset += len(append.events)
        acknowledged = [a.number for a in history.appends if a.acknowledged_at <= cut]
        missing = sorted(set(acknowledged) - set(found))
        assert not missing, f"acknowledged appends lost: {missing}"
        assert len(found) == len(set(found)), "an append appears twice"
        for stream in STREAMS:
            versions = [event.version async for event in journal.read(stream)]
            assert versions == list(range(1, len(versions) + 1))
            await _check_snapshot(journal, history, cut, stream, len(versions))
        await journal.append("a", [NewEvent("E", {"after": True})], expected_version=None)
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, file_io=io) as reopened:
        assert await reopened.head_position() == len(events) + 1


async def _check_snapshot(
    journal: FileJournal, history: History, cut: int, stream: str, version: int
) -> None:
    snapshot = await journal.load_snapshot(stream)
    acknowledged = [
        s.version for s in history.saves if s.stream == stream and s.acknowledged_at <= cut
    ]
    if snapshot is None:
        assert not acknowledged, f"the acknowledged snapshots of {stream!r} are lost"
        return
    assert snapshot.version <= version
    assert snapshot.data == {"stream": stream, "version": snapshot.version}
    assert snapshot.version >= max(acknowledged, default=0)


def _fingerprint(files: dict[str, bytes] | None) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, content in sorted((files or {}).items()):
        digest.update(name.encode() + b"\0" + hashlib.blake2b(content).digest())
    return ("none:" if files is None else "") + digest.hexdigest()


class Checker:
    """Checks power cuts of one recorded run, each distinct directory once per acknowledged set."""

    def __init__(self, io: PowerCutFileIO, history: History, scratch: str) -> None:
        self.io = io
        self.history = history
        self.scratch = scratch
        self.seen: set[tuple[str, int, int]] = set()
        self.checked = 0

    def check(self, power_cut: PowerCut) -> None:
        try:
            files = self.io.files(power_cut)
        except ImpossibleState:
            return
        cut = power_cut.cut
        key = (
            _fingerprint(files),
            sum(append.acknowledged_at <= cut for append in self.history.appends),
            sum(saved.acknowledged_at <= cut for saved in self.history.saves),
        )
        if key in self.seen:
            return
        self.seen.add(key)
        self.checked += 1
        target = os.path.join(self.scratch, f"cut-{self.checked}")
        try:
            if files is not None:  # A cut before the directory's first sync may leave none.
                write_directory(files, target)
                report = verify_journal(target)
                assert report.problem is None, f"verify_journal reports damage: {report.problem}"
            anyio.run(_check, target, self.history, power_cut.cut)
        except Exception as error:
            error.add_note(f"power cut {power_cut}; files {sorted((files or {}).keys())}")
            raise


def _record(workload: list[Step], scratch: str) -> tuple[PowerCutFileIO, History]:
    directory = os.path.join(scratch, "journal")
    io = PowerCutFileIO(directory)
    history = anyio.run(_run, directory, io, workload)
    return io, history


@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(workload=st.lists(steps, min_size=2, max_size=7), data=st.data())
def test_a_power_cut_at_any_point_keeps_every_acknowledged_append(
    workload: list[Step], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        io, history = _record(workload, scratch)
        checker = Checker(io, history, scratch)
        count = len(io.operations)
        cuts = data.draw(st.lists(st.integers(0, count), min_size=1, max_size=5, unique=True))
        for cut in cuts:
            power_cuts = list(io.power_cuts(cut))
            chosen = st.lists(st.integers(0, len(power_cuts) - 1), min_size=1, max_size=4)
            for index in data.draw(chosen):
                checker.check(power_cuts[index])
            unsynced = io.unsynced(cut)
            writes = {
                index: data.draw(st.sampled_from(fates(write))) for index, write in unsynced.writes
            }
            indexes = [index for index, _ in unsynced.names]
            names = data.draw(st.sets(st.sampled_from(indexes)) if indexes else st.just(set()))
            kept = {index: fate for index, fate in writes.items() if fate}
            checker.check(PowerCut(cut, kept, frozenset(names), "sampled"))


EVERY_KIND = [
    ("append", ("a", 1, 8)),
    ("append", ("b", 3, 700)),
    ("snapshot", "a"),
    ("concurrent", 700),
    ("snapshot", "b"),
    ("append", ("a", 2, 700)),
    ("snapshot", "b"),
    ("reopen", None),
    ("append", ("c", 1, 700)),
    ("snapshot", "c"),
    ("compact", None),
    ("append", ("c", 2, 8)),
    ("snapshot", "a"),
]


def _check_every_cut(io: PowerCutFileIO, history: History, scratch: str) -> int:
    """Check every power cut ``power_cuts`` names at every cut point; answer how many distinct
    directories were opened."""
    checker = Checker(io, history, scratch)
    for cut in range(len(io.operations) + 1):
        for power_cut in io.power_cuts(cut):
            checker.check(power_cut)
    return checker.checked


def test_every_cut_point_of_a_workload_with_every_kind_of_step(tmp_path: Path) -> None:
    io, history = _record(EVERY_KIND, str(tmp_path))
    assert io.operations[0] == Name("mkdir", None, None, 0)  # The directory, made through FileIO.
    # Distinct directories: it rolled twice, saved, compacted and closed cleanly twice.
    assert _check_every_cut(io, history, str(tmp_path)) > 50


SNAPSHOTS_TO_COMPACT = [
    ("append", ("a", 2, 8)),
    ("append", ("b", 1, 8)),
    ("snapshot", "b"),
    *[("snapshot", "a")] * 5,  # Of equal versions a compaction keeps the last saved.
    ("reopen", None),  # Opening compacts the snapshot file (it is worth it here).
    ("append", ("a", 1, 8)),
    ("snapshot", "a"),
]


def test_every_cut_point_of_a_compaction_that_opening_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)  # A small file is worth it.
    io, history = _record(SNAPSHOTS_TO_COMPACT, str(tmp_path))
    renamed = [op.target for op in io.operations if isinstance(op, Name) and op.kind == "rename"]
    assert renamed.count("snapshots.dat") == 1
    assert _check_every_cut(io, history, str(tmp_path)) > 20


NEVER = 1 << 62
"""``acknowledged_at`` of what was never acknowledged."""
AFTER_RECOVERY: list[Step] = [("append", ("c", 1, 700)), ("snapshot", "c")]


@settings(max_examples=examples(5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_power_cut_while_the_journal_recovers_from_one(data: st.DataObject) -> None:
    """Opening after a power cut cuts torn tails, removes a torn segment creation, writes a
    torn snapshot file header again, rebuilds index files: each must be durable before the
    journal acknowledges anything, or a second power cut finds the first one's damage."""
    with tempfile.TemporaryDirectory() as scratch:
        first, history = _record(EVERY_KIND, scratch)
        # A cut that leaves something unsynced, so that recovery has something to repair.
        cuts = [cut for cut in range(len(first.operations) + 1) if first.unsynced(cut).writes]
        cut = data.draw(st.sampled_from(cuts))
        power_cuts = list(first.power_cuts(cut))
        power_cut = power_cuts[data.draw(st.integers(0, len(power_cuts) - 1))]
        try:
            files = first.files(power_cut)
        except ImpossibleState:
            return
        directory = os.path.join(scratch, "recovered")
        if files is not None:
            write_directory(files, directory)
        # In the second run, what the first acknowledged by the cut is acknowledged from its
        # start; the rest never is (it may be there: it was written).
        records: list[Append | Saved] = [*history.appends, *history.saves]
        for record in records:
            record.acknowledged_at = 0 if record.acknowledged_at <= cut else NEVER
        second = PowerCutFileIO(directory)
        anyio.run(_run, directory, second, AFTER_RECOVERY, history)
        _check_every_cut(second, history, scratch)


class AcknowledgesUnsyncedBatches(PowerCutFileIO):
    """A broken journal's file layer: a batch's write returns before it is synced."""

    def write_durably(self, fd: int, data: bytes, offset: int) -> None:
        self.pwrite_all(fd, data, offset)


class SkipsTheDirectorySyncOfARoll(PowerCutFileIO):
    """A broken journal's file layer: once the journal has rolled, directory syncs are lost,
    so a new segment's name is not durable when appends to it are acknowledged."""

    def fsync_directory(self, path: str) -> None:
        if len([name for name in os.listdir(path) if name.endswith(".log")]) < 2:
            super().fsync_directory(path)


@pytest.mark.parametrize("broken", [AcknowledgesUnsyncedBatches, SkipsTheDirectorySyncOfARoll])
def test_the_simulation_finds_a_missing_sync(tmp_path: Path, broken: type[PowerCutFileIO]) -> None:
    directory = str(tmp_path / "journal")
    io = broken(directory)
    history = anyio.run(_run, directory, io, EVERY_KIND)
    with pytest.raises(AssertionError, match="acknowledged appends lost"):
        _check_every_cut(io, history, str(tmp_path))


def _states(io: PowerCutFileIO, cut: int) -> list[dict[str, bytes] | None]:
    states: list[dict[str, bytes] | None] = []
    for power_cut in io.power_cuts(cut):
        with contextlib.suppress(ImpossibleState):
            states.append(io.files(power_cut))
    return states


def test_the_model_of_what_a_power_cut_leaves(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    io = PowerCutFileIO(str(directory))
    io.makedirs(str(directory), 0o700)
    assert None in _states(io, len(io.operations))  # The directory may be lost with its name.
    fd = io.open(str(directory / "f"), os.O_RDWR | os.O_CREAT)
    io.pwrite_all(fd, b"a" * 1000, 0)
    io.fsync(fd)
    io.fsync_directory(str(directory))
    io.pwrite_all(fd, b"b" * 1000, 1000)  # Unsynced: lost, kept, torn or zeroed.
    io.write_durably(fd, b"c" * 10, 2000)  # Durable once it returns, not before.
    inside = len(io.operations) - 1
    states = [state["f"] for state in _states(io, len(io.operations)) if state is not None]
    assert all(state[:1000] == b"a" * 1000 and state[2000:] == b"c" * 10 for state in states)
    zeros = bytes(1000)
    assert (
        {state[1000:2000] for state in states}
        == {
            b"b" * 1000,
            zeros,
            b"b" * 24 + zeros[24:],  # Torn at 1024 and 1536, sector boundaries of the file.
            b"b" * 536 + zeros[536:],
        }
    )
    assert {len(state["f"]) for state in _states(io, inside) if state is not None} >= {1000, 2010}
    io.close(fd)
    temporary = str(directory / "f.tmp")
    fd = io.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    io.pwrite_all(fd, b"new", 0)
    io.fsync(fd)
    io.close(fd)
    io.replace(temporary, str(directory / "f"))  # Its directory not synced: old or new.
    renamed = [state for state in _states(io, len(io.operations)) if state is not None]
    assert {state.get("f", b"")[:3] for state in renamed} == {b"aaa", b"new"}
    assert all("f.tmp" not in state or state["f"][:3] == b"aaa" for state in renamed)
