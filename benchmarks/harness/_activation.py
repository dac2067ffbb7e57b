"""The ``activation`` scenario: activating new entities, and what an idle live actor costs.

Activations/s: concurrent callers read the state of entities that have never been seen, so
each read activates a new actor (the journal is asked for the entity's history, which is
empty). Bytes per idle actor: tracemalloc counts every byte the runtime (and the journal)
still holds after activating a batch of new entities and letting them go idle, divided by
their number. A new entity's state is the aggregate's shared initial state, so the figure
is the runtime's own overhead beyond the user's state.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path

import anyio

from journals import FileJournal
from runtime import Runtime

from ._context import BenchContext
from ._results import Figure, ScenarioResult
from ._stats import rate_per_s, summarize

NAME = "activation"
TITLE = "Activation: new actors per second, and bytes per idle live actor"
CALLERS = 100
"""Concurrent callers activating entities (each entity is activated once)."""


async def _activate_all(runtime: Runtime, context: BenchContext, entity_ids: list[str]) -> None:
    aggregate = context.workload.aggregate
    callers = min(CALLERS, len(entity_ids))

    async def activate(share: list[str]) -> None:
        for entity_id in share:
            await runtime.state(aggregate, entity_id)

    async with anyio.create_task_group() as group:
        for caller in range(callers):
            group.start_soon(activate, entity_ids[caller::callers])


async def _rates(context: BenchContext, runtime: Runtime) -> list[float]:
    sizes = context.sizes
    rates = []
    total = sizes.repetitions + (1 if sizes.warmup else 0)
    for number in range(total):
        context.progress.step(f"activations, round {number + 1}/{total}")
        entity_ids = [f"new-{number}-{index}" for index in range(sizes.activations)]
        began = time.perf_counter_ns()
        await _activate_all(runtime, context, entity_ids)
        elapsed = time.perf_counter_ns() - began
        if not (sizes.warmup and number == 0):
            rates.append(rate_per_s(len(entity_ids), elapsed))
    return rates


async def _bytes_per_actor(context: BenchContext, runtime: Runtime) -> list[float]:
    sizes = context.sizes
    samples = []
    for number in range(sizes.repetitions):
        context.progress.step(f"memory per idle actor, round {number + 1}/{sizes.repetitions}")
        entity_ids = [f"idle-{number}-{index}" for index in range(sizes.memory_actors)]
        live_before = runtime.statistics().live_actors
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await _activate_all(runtime, context, entity_ids)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        activated = runtime.statistics().live_actors - live_before
        if activated != len(entity_ids):
            raise RuntimeError(
                f"{activated} actors stayed live out of {len(entity_ids)} activated; the "
                f"memory figure needs them all live (is max_live_actors set?)"
            )
        samples.append((after - before) / activated)
    return samples


async def _measure(context: BenchContext, directory: Path) -> list[Figure]:
    async with (
        FileJournal(directory, durable=context.durable) as journal,
        Runtime(journal, max_live_actors=None) as runtime,
    ):
        rates = await _rates(context, runtime)
        memory = await _bytes_per_actor(context, runtime)
    durable = context.durable  # Not durable: labelled so, and no target is checked.
    return [
        Figure(
            NAME,
            "activations_per_s",
            "new-actor activations/s",
            "/s",
            summarize(rates),
            durable=durable,
        ),
        Figure(
            NAME,
            "bytes_per_idle_actor",
            "memory per idle live actor",
            "bytes",
            summarize(memory),
            durable=durable,
            higher_is_better=False,
        ),
    ]


def run(context: BenchContext) -> ScenarioResult:
    figures, elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        notes=(
            "activations read an empty history, so they are not slowed by the disk; the memory "
            "figure is measured with tracemalloc and excludes the entity-id strings the "
            "benchmark made",
        ),
        settings={
            "activations_per_round": context.sizes.activations,
            "callers": CALLERS,
            "memory_actors": context.sizes.memory_actors,
            "workload": context.workload.name,
        },
    )
