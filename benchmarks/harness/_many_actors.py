"""The ``many-actors`` scenario: one-event commands over many entities, sweeping concurrency.

The runtime runs on a FileJournal; every entity is activated (one command each) before the
sweep. At each point, N callers each send commands with ``ask`` one after another, caller
``c`` cycling over its own share of the entities, so no two callers ever share an entity and
each entity's commands follow the factory's index order.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio

from journals import FileJournal
from runtime import Runtime

from ._context import BenchContext
from ._drive import Operation, command_figures, measure_point
from ._results import Figure, ScenarioResult
from ._workload import Sender

NAME = "many-actors"
TITLE = "Many actors: durable one-event commands over N entities, by concurrent callers"


async def _warm(sender: Sender, entity_ids: list[str], callers: int) -> None:
    """Activate every entity with its first command, from ``callers`` tasks."""

    async def activate(share: list[str]) -> None:
        for entity_id in share:
            await sender.ask(entity_id)

    async with anyio.create_task_group() as group:
        for caller in range(callers):
            group.start_soon(activate, entity_ids[caller::callers])


def _one_command(sender: Sender, entity_ids: list[str], callers: int) -> Operation:
    """The operation of caller ``c``: the next command to the next entity of its own share."""
    shares = [entity_ids[caller::callers] for caller in range(callers)]
    positions = [0] * callers

    def one_command(caller: int) -> Awaitable[Any]:
        share = shares[caller]
        position = positions[caller]
        positions[caller] = position + 1
        return sender.ask(share[position % len(share)])

    return one_command


async def _measure(context: BenchContext, directory: Path) -> list[Figure]:
    sizes = context.sizes
    entity_ids = [f"entity-{index}" for index in range(sizes.entities)]
    figures: list[Figure] = []
    async with (
        FileJournal(directory, durable=context.durable) as journal,
        Runtime(journal, max_live_actors=None) as runtime,
    ):
        sender = Sender(runtime, context.workload)
        context.progress.step(f"activating {len(entity_ids)} entities")
        await _warm(sender, entity_ids, min(len(entity_ids), 1_000))
        for point, callers in enumerate(sizes.callers):
            operation = _one_command(sender, entity_ids, callers)
            rounds = await measure_point(
                context,
                journal,
                callers,
                operation,
                warm_up=point == 0,
                label=f"callers={callers}",
                one_event_each=True,
            )
            figures += command_figures(NAME, rounds, {"callers": callers}, durable=context.durable)
    return figures


def run(context: BenchContext) -> ScenarioResult:
    sizes = context.sizes
    too_many = [callers for callers in sizes.callers if callers > sizes.entities]
    if too_many:
        raise ValueError(
            f"many-actors needs at least as many entities ({sizes.entities}) as callers "
            f"({max(too_many)}): a caller owns its entities"
        )
    figures, elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        settings={
            "entities": sizes.entities,
            "callers": list(sizes.callers),
            "round_s": sizes.round_s,
            "workload": context.workload.name,
        },
    )
