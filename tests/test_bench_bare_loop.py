"""The bare loop, the runtime's baseline: it must do the durable work it is credited with."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from benchmarks.harness import DEFAULT_WORKLOAD
from benchmarks.harness._bare_loop import BareLoop

pytestmark = pytest.mark.anyio

HEADER = struct.Struct("<II")


def read_frames(path: Path) -> list[Any]:
    """Every record of the bare loop's file, each checked against its CRC32."""
    raw = path.read_bytes()
    records, offset = [], 0
    while offset < len(raw):
        length, crc = HEADER.unpack_from(raw, offset)
        payload = raw[offset + HEADER.size : offset + HEADER.size + length]
        assert len(payload) == length, "a torn record"
        assert zlib.crc32(payload) == crc
        records.append(orjson.loads(payload))
        offset += HEADER.size + length
    return records


async def test_every_answer_comes_after_its_events_are_written_and_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bare"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    synced = [0]  # Bytes of the file when the last fdatasync returned.

    def counting_fdatasync(descriptor: int) -> None:
        os.fsync(descriptor)
        synced[0] = os.fstat(descriptor).st_size

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    bare = BareLoop(fd, DEFAULT_WORKLOAD, durable=True)
    answered: list[tuple[str, int]] = []

    async def caller(entity_id: str, commands: int) -> None:
        for _ in range(commands):
            await bare.ask(entity_id)
            # Its own record, and every one before it, is in the synced part of the file.
            done = read_frames(path)
            size = sum(HEADER.size + len(orjson.dumps(record)) for record in done)
            assert size <= synced[0]
            answered.append((entity_id, sum(1 for r in done if r[0] == entity_id)))

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(bare.commit)
                async with anyio.create_task_group() as callers:
                    for index in range(20):
                        callers.start_soon(caller, f"entity-{index % 5}", 10)
                group.cancel_scope.cancel()
    finally:
        os.close(fd)

    records = read_frames(path)
    assert len(records) == len(answered) == 200
    assert bare.events == 200
    assert 1 <= bare.fsyncs < 200, "commands in flight together share a write and a sync"
    for index in range(5):
        entity_id = f"entity-{index}"
        mine = [record for record in records if record[0] == entity_id]
        # Versions gapless per entity, each event the one its command decided.
        assert [record[1] for record in mine] == list(range(1, 41))
        aggregate = DEFAULT_WORKLOAD.aggregate
        state, expected = aggregate.initial, []
        for command_index in range(40):
            events = aggregate.decide(state, DEFAULT_WORKLOAD.commands(entity_id, command_index))
            state = aggregate.fold(state, events)
            types, data = aggregate.event_columns(events)
            for event_type, value in zip(types, data, strict=True):
                expected.append([event_type, orjson.loads(orjson.dumps(value))])
        assert [record[2:] for record in mine] == expected


async def test_a_caller_cancelled_while_it_waits_does_not_break_the_committer(
    tmp_path: Path,
) -> None:
    fd = os.open(tmp_path / "bare", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    bare = BareLoop(fd, DEFAULT_WORKLOAD, durable=False)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(bare.commit)
                with anyio.CancelScope() as waiting:
                    waiting.cancel()
                    await bare.ask("cancelled")  # Cancelled while its batch is written.
                # The bare loop offers no event for a written batch, only its counters.
                while bare.statistics()[0] < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                await bare.ask("answered")  # The committer still writes and answers.
                group.cancel_scope.cancel()
    finally:
        os.close(fd)
    assert [record[0] for record in read_frames(tmp_path / "bare")] == ["cancelled", "answered"]
