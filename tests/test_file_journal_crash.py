"""A real crash: a child process appends, is killed with SIGKILL, every acknowledged append
survives reopening."""

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

from journals import FileJournal, verify_journal

ROOT = Path(__file__).resolve().parent.parent


async def _recovered(directory: Path) -> dict[tuple[str, int], tuple[int, int]]:
    async with FileJournal(directory) as journal:
        return {
            (event.stream_id, event.version): (event.position, event.data["value"])
            async for event in journal.read_all()
        }


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_every_acknowledged_append_survives_sigkill(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    directory = tmp_path / "journal"
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
    recovered = anyio.run(_recovered, directory)
    missing = {key: value for key, value in acknowledged.items() if recovered.get(key) != value}
    assert missing == {}
    # Recovery left a clean journal behind.
    assert verify_journal(directory).intact
