"""A stock service with snapshots, passivation and snapshot compaction, killed with SIGKILL.

``test_durability_campaign`` kills a runtime that snapshots by count; this one also snapshots
on passivation (by idle time and by a live-actor bound), lets the snapshot file be compacted
while the service runs and at every opening, rejects commands on the state it reached, and
reads past states: after each kill it checks that every acknowledged command is in the journal
at its version, that each entity's state from snapshot plus tail and every past state equal a
plain fold of its events, that stock is never reserved beyond what is available, that the
journal verifies, and that opening left no more than half the snapshot file to drop.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from journals import FileJournal, verify_journal
from journals import _snapshot_retention as retention
from runtime import Runtime

from .snapshot_crash_child import (
    MAX_LIVE_ACTORS,
    SEGMENT_BYTES_MAX,
    Stock,
    stock,
)

ROOT = Path(__file__).parent.parent
KILLS = 3
ACKNOWLEDGED_BEFORE_KILL = 600
Intent = tuple[str, str, int]  # entity, kind (S restock, R reserve), quantity
Answer = tuple[int, int] | None  # (version, position) acknowledged, None rejected


def _drain(stream: Any, into: bytearray) -> None:
    while chunk := stream.read1(65536):
        into.extend(chunk)


def _run_until_killed(directory: Path, first_op: int, seed: int) -> bytes:
    """Start the child and kill it once it has acknowledged enough commands."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.snapshot_crash_child",
            str(directory),
            str(first_op),
            str(seed),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,  # where "-m tests.snapshot_crash_child" finds the child
    )
    output = bytearray()
    reader = threading.Thread(target=_drain, args=(child.stdout, output))
    reader.start()
    deadline = time.monotonic() + 30.0
    while output.count(b"\nA ") < ACKNOWLEDGED_BEFORE_KILL and child.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    exited = child.poll()
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    assert child.stdout is not None
    child.stdout.close()
    assert exited is None, f"the child exited by itself with status {exited}"
    acknowledged = output.count(b"\nA ")
    assert acknowledged >= ACKNOWLEDGED_BEFORE_KILL, f"only {acknowledged} acknowledged in 30 s"
    return bytes(output)


def _parse(output: bytes, intents: dict[int, Intent], answers: dict[int, Answer]) -> None:
    for line in output.split(b"\n")[:-1]:  # a last line without "\n" was never written whole
        parts = line.decode().split()
        if parts[0] == "I":
            intents[int(parts[1])] = (parts[2], parts[3], int(parts[4]))
        elif parts[0] == "A":
            answers[int(parts[1])] = (int(parts[2]), int(parts[3]))
        elif parts[0] == "J":
            answers[int(parts[1])] = None


def _fold(events: list[tuple[str, dict[str, Any]]]) -> Stock:
    """The stock after ``events``, folded without the runtime; checks the stock invariant."""
    state = Stock()
    for event_type, data in events:
        quantity = data["quantity"]
        if event_type == "stock.Restocked/1":
            state = Stock(
                state.available + quantity, state.restocked + quantity, state.reserved, data["op"]
            )
        else:
            assert event_type == "stock.Reserved/1", event_type
            assert quantity <= state.available, f"reserved {quantity} of {state.available}"
            state = Stock(
                state.available - quantity, state.restocked, state.reserved + quantity, data["op"]
            )
    return state


async def _check(directory: Path, intents: dict[int, Intent], answers: dict[int, Answer]) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        streams: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        found: dict[int, tuple[str, int, int]] = {}
        position = 0
        async for event in journal.read_all():
            position += 1
            assert event.position == position
            events = streams.setdefault(event.stream_id, [])
            events.append((event.type, event.data))
            assert event.version == len(events)
            op = event.data["op"]
            assert op not in found, f"op {op} is in the journal twice"
            found[op] = (event.stream_id, event.version, event.position)
            entity, kind, quantity = intents[op]
            assert event.stream_id == f"stock-{entity}"
            assert (event.type, event.data["quantity"]) == (
                "stock.Restocked/1" if kind == "S" else "stock.Reserved/1",
                quantity,
            )
            assert answers.get(op, (0, 0)) is not None, f"op {op} was rejected, yet stored"
        for op, answer in answers.items():
            if answer is not None:
                location = found.get(op)
                assert location is not None, f"acknowledged op {op} is lost"
                assert location[1:] == answer, f"op {op} acknowledged at {answer}: {location}"
        async with Runtime(
            journal, max_live_actors=MAX_LIVE_ACTORS, snapshot_on_passivation=True
        ) as runtime:
            for stream_id, events in streams.items():
                entity = stream_id.removeprefix("stock-")
                assert await runtime.state(stock, entity) == _fold(events)
                for version in range(len(events) + 1):
                    past = await runtime.state_at(stock, entity, version=version)
                    assert past == _fold(events[:version]), (stream_id, version)
    assert verify_journal(directory).problem is None


async def _check_compacted(directory: Path) -> None:
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        compaction = await journal.compact_snapshots()
    # Every opening and every save that doubled the file looked at compacting it, and did once
    # half the file could go: across kills, less than half of it is left to drop.
    dropped = compaction.bytes_before - compaction.bytes_after
    assert 2 * dropped < compaction.bytes_before, compaction


@pytest.mark.slow
def test_stock_service_survives_kills_with_snapshots_passivation_and_compaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the child does, for this process's openings: the test's small file is worth it.
    monkeypatch.setattr(retention, "COMPACT_DEAD_BYTES_MIN", 1)
    monkeypatch.setattr(retention, "COMPACT_GROWTH_BYTES_MIN", 1)
    rng = random.Random(19)
    directory = tmp_path / "journal"
    intents: dict[int, Intent] = {}
    answers: dict[int, Answer] = {}
    first_op = 1
    for _ in range(KILLS):
        _parse(_run_until_killed(directory, first_op, rng.randrange(2**32)), intents, answers)
        anyio.run(_check, directory, intents, answers)
        first_op = max(intents) + 1
    anyio.run(_check_compacted, directory)
    assert (
        sum(answer is not None for answer in answers.values()) >= KILLS * ACKNOWLEDGED_BEFORE_KILL
    )
    assert any(answer is None for answer in answers.values())  # rejections happened
