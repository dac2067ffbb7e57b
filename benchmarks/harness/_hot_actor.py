"""The ``hot-actor`` scenario: one entity, many commands in flight (pipelined).

N callers ask the same entity at once. The actor decides each command against its state in
memory while earlier events still wait for the group commit, and releases each answer once
its own events are durable; this measures how far pipelining carries one entity.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from journals import FileJournal
from runtime import Runtime

from ._context import BenchContext
from ._drive import command_figures, measure_point
from ._results import Figure, ScenarioResult
from ._workload import Sender

NAME = "hot-actor"
TITLE = "Hot actor: one entity, durable one-event commands pipelined"
ENTITY_ID = "hot"


async def _measure(context: BenchContext, directory: Path) -> list[Figure]:
    sizes = context.sizes
    in_flight = sizes.hot_in_flight
    # The mailbox holds every caller's command: callers never wait for room.
    async with (
        FileJournal(directory, durable=context.durable) as journal,
        Runtime(journal, mailbox_bound=max(in_flight, 1)) as runtime,
    ):
        sender = Sender(runtime, context.workload)
        await sender.ask(ENTITY_ID)

        def one_command(caller: int) -> Awaitable[Any]:
            return sender.ask(ENTITY_ID)

        rounds = await measure_point(
            context,
            journal,
            in_flight,
            one_command,
            warm_up=True,
            label=f"in flight={in_flight}",
            one_event_each=True,
        )
    return command_figures(NAME, rounds, {"in_flight": in_flight}, durable=context.durable)


def run(context: BenchContext) -> ScenarioResult:
    figures, elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        settings={
            "in_flight": context.sizes.hot_in_flight,
            "round_s": context.sizes.round_s,
            "workload": context.workload.name,
        },
    )
