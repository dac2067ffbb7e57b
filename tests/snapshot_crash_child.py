"""Child process of the snapshot crash test: a stock service with snapshots, passivation and
compaction, run until the parent kills it with SIGKILL.

Usage: python -m tests.snapshot_crash_child DIRECTORY FIRST_OP SEED. It writes ``R`` once the
runtime runs, then per command ``I op entity kind quantity`` before asking, and ``A op version
position`` (acknowledged) or ``J op`` (rejected) after the answer, one write per line.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass

import anyio

from journals import FileJournal
from journals import _snapshot_retention as retention
from runtime import Aggregate, CommandRejected, Runtime

ENTITIES = 12
CALLERS = 32
MAX_LIVE_ACTORS = 4
SEGMENT_BYTES_MAX = 16 * 1024


@dataclass(frozen=True)
class Restock:
    op: int
    quantity: int


@dataclass(frozen=True)
class Reserve:
    op: int
    quantity: int


@dataclass(frozen=True)
class Restocked:
    op: int
    quantity: int


@dataclass(frozen=True)
class Reserved:
    op: int
    quantity: int


@dataclass(frozen=True)
class Stock:
    available: int = 0
    restocked: int = 0
    reserved: int = 0
    last_op: int = 0


def decide(state: Stock, command: Restock | Reserve) -> list[Restocked | Reserved]:
    match command:
        case Restock(op, quantity):
            return [Restocked(op, quantity)]
        case Reserve(op, quantity) if quantity > state.available:
            raise CommandRejected(f"short: {quantity} asked, {state.available} in stock")
        case Reserve(op, quantity):
            return [Reserved(op, quantity)]
    raise TypeError(f"not a stock command: {command!r}")


def evolve(state: Stock, event: Restocked | Reserved) -> Stock:
    match event:
        case Restocked(op, quantity):
            return Stock(state.available + quantity, state.restocked + quantity, state.reserved, op)
        case Reserved(op, quantity):
            return Stock(state.available - quantity, state.restocked, state.reserved + quantity, op)
    raise TypeError(f"not a stock event: {event!r}")


stock = Aggregate(
    "stock",
    Stock(),
    decide,
    evolve,
    events={"Restocked": Restocked, "Reserved": Reserved},
    snapshot_every=3,
)


def make_small_files_worth_compacting() -> None:
    """Let this test's small snapshot file be compacted, at opening and after saves."""
    retention.COMPACT_DEAD_BYTES_MIN = 1
    retention.COMPACT_GROWTH_BYTES_MIN = 1


def _emit(line: str) -> None:
    os.write(1, line.encode())  # One write per line: the parent never reads half of one.


async def _caller(runtime: Runtime, rng: random.Random, next_op: list[int]) -> None:
    while True:
        op = next_op[0]
        next_op[0] += 1
        entity = f"sku{rng.randrange(ENTITIES)}"
        quantity = rng.randint(1, 9)
        restock = rng.random() < 0.4
        _emit(f"I {op} {entity} {'S' if restock else 'R'} {quantity}\n")
        command = Restock(op, quantity) if restock else Reserve(op, quantity)
        try:
            result = await runtime.ask(stock, entity, command)
        except CommandRejected:
            _emit(f"J {op}\n")
        else:
            _emit(f"A {op} {result.version} {result.position}\n")


async def main(directory: str, first_op: int, seed: int) -> None:
    make_small_files_worth_compacting()
    rng = random.Random(seed)
    next_op = [first_op]
    async with (
        FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal,
        Runtime(
            journal,
            max_live_actors=MAX_LIVE_ACTORS,
            passivate_after_s=0.05,
            snapshot_on_passivation=True,
        ) as runtime,
    ):
        _emit("R\n")
        async with anyio.create_task_group() as group:
            for _ in range(CALLERS):
                group.start_soon(_caller, runtime, random.Random(rng.random()), next_op)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
