"""A real crash: a child process appends, is killed with SIGKILL, every acknowledged append
survives reopening. Half the runs kill a journal that had been closed cleanly and reopened by
the child: its clean-close record must be gone, so that the torn tail is cut, not refused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from journals import FileJournal, NewEvent, verify_journal
from journals._clean_close import CLEAN_CLOSE_FILE_NAME

ROOT = Path(__file__).resolve().parent.parent


async def _recovered(directory: Path) -> dict[tuple[str, int], tuple[int, int]]:
    async with FileJournal(directory) as journal:
        return {
            (event.stream_id, event.version): (event.position, event.data["value"])
            async for event in journal.read_all()
        }


async def _write_and_close(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=64 * 1024) as journal:
        for value in range(100):
            await journal.append(
                "before", [NewEvent("Tick", {"value": value})], expected_version=value
            )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_acknowledged_append_survives_sigkill(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "journal"
    if seed % 2 == 0:
        anyio.run(_write_and_close, directory)
        assert (directory / CLEAN_CLOSE_FILE_NAME).exists()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_child", str(directory), str(rng.choice([1, 8, 64]))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    with child.stdout:
        try:
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.05, 0.4))
        finally:
            child.send_signal(signal.SIGKILL)
            output = child.stdout.read()
            child.wait()
    # A line the child did not finish printing was not seen as acknowledged.
    lines = [line for line in output.split(b"\n")[:-1] if line]
    acknowledged = {}
    for line in lines:
        stream, version, position, value = line.decode().split()
        acknowledged[(stream, int(version))] = (int(position), int(value))
    assert acknowledged, "the child acknowledged nothing before it was killed"
    assert not (directory / CLEAN_CLOSE_FILE_NAME).exists()  # The child's open took it away.
    recovered = anyio.run(_recovered, directory)
    missing = {key: value for key, value in acknowledged.items() if recovered.get(key) != value}
    assert missing == {}
    if seed % 2 == 0:
        assert [recovered[("before", version)][1] for version in range(1, 101)] == list(range(100))
    # Recovery left a clean journal behind.
    assert verify_journal(directory).intact
