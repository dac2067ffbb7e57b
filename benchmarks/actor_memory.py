"""Bytes per idle activated actor, beyond the user's state, measured with tracemalloc.

Run: ``python -m benchmarks.actor_memory [--actors 100000] [--backend asyncio|trio]``

Activates N entities of an aggregate whose state is one shared object (so the user's state
costs nothing), then counts every byte allocated and still held: the actor objects, their
stream ids, the runtime's dictionary. Entity ids are created before the baseline is taken
(they are the caller's). The same run measures, as the baseline, the conventional design: one
task per entity blocked on its own bounded queue, which is what the runtime avoids.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from dataclasses import dataclass

import anyio

from benchmarks._arguments import positive_int
from journals import MemoryJournal
from runtime import Aggregate, Runtime

_TASK_BASELINE_ACTORS = 10_000


@dataclass(frozen=True, slots=True)
class Touched:
    pass


_STATE = object()


def _decide(state: object, command: object) -> list[Touched]:
    return [Touched()]


def _evolve(state: object, event: Touched) -> object:
    return state


IDLE = Aggregate("idle", _STATE, _decide, _evolve, events={"Touched": Touched})


async def runtime_bytes_per_actor(actors: int) -> tuple[float, int]:
    entity_ids = [f"entity-{number:08d}" for number in range(actors)]
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        gc.collect()
        before = tracemalloc.take_snapshot()
        for entity_id in entity_ids:
            await runtime.state(IDLE, entity_id)
        gc.collect()
        after = tracemalloc.take_snapshot()
        live = runtime.statistics().live_actors
        assert live == actors, f"expected {actors} live actors, found {live}"
        held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return held / actors, live


async def task_bytes_per_actor(actors: int) -> float:
    """The baseline: one task per entity, blocked on its own queue (bound 16)."""
    gc.collect()
    before = tracemalloc.take_snapshot()
    async with anyio.create_task_group() as tg:
        senders = []
        for _ in range(actors):
            send, receive = anyio.create_memory_object_stream[object](16)
            senders.append(send)
            tg.start_soon(_mailbox_loop, receive)
        await anyio.wait_all_tasks_blocked()
        gc.collect()
        after = tracemalloc.take_snapshot()
        for send in senders:
            send.close()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return held / actors


async def _mailbox_loop(receive: anyio.abc.ObjectReceiveStream[object]) -> None:
    async with receive:
        async for _ in receive:
            pass


async def _main(actors: int) -> None:
    tracemalloc.start()
    per_actor, live = await runtime_bytes_per_actor(actors)
    per_task = await task_bytes_per_actor(_TASK_BASELINE_ACTORS)
    tracemalloc.stop()
    print(f"idle activated actors:           {live:,}")
    print(f"bytes per idle actor (runtime):  {per_actor:,.0f}  (target <= 500)")
    print(f"bytes per task + queue baseline: {per_task:,.0f}  ({_TASK_BASELINE_ACTORS:,} tasks)")
    print(f"ratio baseline / runtime:        {per_task / per_actor:.1f}x smaller")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=positive_int, default=100_000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    arguments = parser.parse_args()
    anyio.run(_main, arguments.actors, backend=arguments.backend)


if __name__ == "__main__":
    main()
