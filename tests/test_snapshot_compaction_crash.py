"""A real crash inside a compaction of the snapshot file: a child process kills itself with
SIGKILL at a named point (``tests/compaction_crash_child.py``). Reopening must keep every
acknowledged event, refuse nothing, and find the old snapshot file (before the rename) or the
whole new one (after it), both during an explicit compaction and one that opening runs on a
journal that had been closed cleanly."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, verify_journal
from journals._clean_close import CLEAN_CLOSE_FILE_NAME
from journals._snapshot_retention import retained

from .compaction_crash_child import STREAMS, VERSIONS, fill

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = "snapshots.dat"
HEADER_BYTES = 16
BEFORE_RENAME = ["created", "half-written", "before-sync", "before-rename"]
AFTER_RENAME = ["after-rename", "after-directory-sync"]


def _compacted(old: bytes) -> bytes:
    """The file a compaction makes of ``old``: its header, then the records the retention rule
    keeps, byte for byte and in their old order."""
    records: dict[str, list[tuple[int, int, bytes]]] = {}
    offset = HEADER_BYTES
    while offset < len(old):
        length = int.from_bytes(old[offset : offset + 4], "little")
        body = old[offset + 8 : offset + 8 + length]
        version = int.from_bytes(body[1:9], "little")
        stream = body[22 : 22 + body[17]].decode()
        records.setdefault(stream, []).append((version, offset, old[offset : offset + 8 + length]))
        offset += 8 + length
    kept: list[tuple[int, int, bytes]] = []
    for entries in records.values():
        entries.sort(key=lambda entry: entry[0])
        kept.extend(entries[index] for index in retained([entry[0] for entry in entries]))
    kept.sort(key=lambda entry: entry[1])
    return old[:HEADER_BYTES] + b"".join(record for _, _, record in kept)


def _run_child(directory: Path, point: str, when: str) -> list[str]:
    child = subprocess.run(
        [sys.executable, "-m", "tests.compaction_crash_child", str(directory), point, when],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    lines = child.stdout.decode().split("\n")[:-1]  # A line cut short was not acknowledged.
    assert "survived" not in lines
    return lines


async def _prepare(directory: Path) -> None:
    async with FileJournal(directory) as journal:
        await fill(journal, say=False)


async def _reopened(directory: Path) -> tuple[dict[str, list[int]], dict[str, int]]:
    async with FileJournal(directory) as journal:
        events = {}
        newest = {}
        for stream in range(STREAMS):
            name = f"s{stream}"
            events[name] = [event.data["v"] async for event in journal.read(name)]
            snapshot = await journal.load_snapshot(name)
            assert snapshot is not None
            newest[name] = snapshot.data["at"]
        return events, newest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "when"),
    [
        *itertools.product(BEFORE_RENAME + AFTER_RENAME, ["explicit"]),
        *itertools.product(["half-written", "before-rename", "after-rename"], ["open"]),
    ],
)
def test_a_crash_inside_a_compaction_loses_nothing_and_leaves_either_file(
    tmp_path: Path, point: str, when: str
) -> None:
    directory = tmp_path / "journal"
    if when == "open":
        anyio.run(_prepare, directory)
        assert (directory / CLEAN_CLOSE_FILE_NAME).exists()
        old = (directory / SNAPSHOTS).read_bytes()
        acknowledged = {f"s{stream}": VERSIONS for stream in range(STREAMS)}
    lines = _run_child(directory, point, when)
    if when == "explicit":
        assert "compacting" in lines
        old = Path(str(directory) + ".old").read_bytes()
        acknowledged = {}
        for line in lines:
            if line.startswith("event "):
                _, stream, version = line.split()
                acknowledged[stream] = int(version)
    assert not (directory / CLEAN_CLOSE_FILE_NAME).exists()
    found = (directory / SNAPSHOTS).read_bytes()
    new = _compacted(old)
    assert len(new) < len(old) / 3
    # A process that dies keeps what it handed the kernel: the rename decides which file.
    assert found == (old if point in BEFORE_RENAME else new)
    events, newest = anyio.run(_reopened, directory)
    assert events == {stream: list(range(1, VERSIONS + 1)) for stream in events}
    assert {stream: len(versions) for stream, versions in events.items()} == acknowledged
    assert newest == acknowledged
    assert not (directory / (SNAPSHOTS + ".tmp")).exists()
    assert verify_journal(directory).intact
