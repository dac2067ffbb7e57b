"""The ``journal`` scenario: durable appends straight to FileJournal, without the runtime.

N concurrent tasks each append one event (the workload's first event, about 150 bytes on disk)
to their own stream, again and again. This isolates group commit: events/s, events per fsync,
append latency percentiles, and the index's memory per event.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from journals import FileJournal, NewEvent

from ._context import BenchContext
from ._drive import measure_point, round_figures
from ._index_memory import index_bytes_per_event
from ._results import Figure, ScenarioResult
from ._stats import summarize

NAME = "journal"
TITLE = "FileJournal: durable one-event appends from N concurrent tasks"


async def _measure(context: BenchContext, directory: Path) -> list[Figure]:
    sizes = context.sizes
    sample = context.workload.sample_event_data()
    events = [NewEvent(f"{context.workload.aggregate.name}.Sample", sample)]
    figures: list[Figure] = []
    async with FileJournal(directory, durable=context.durable) as journal:
        append = journal.append

        stream_ids = [f"appender-{caller}" for caller in range(max(sizes.callers))]

        def one_append(caller: int) -> Awaitable[Any]:
            return append(stream_ids[caller], events, expected_version=None)

        for point, appenders in enumerate(sizes.callers):
            rounds = await measure_point(
                context,
                journal,
                appenders,
                one_append,
                warm_up=point == 0,
                label=f"appenders={appenders}",
            )
            figures += round_figures(
                NAME,
                rounds,
                {"appenders": appenders},
                rate_name="events_per_s",
                rate_label="durable one-event appends/s",
                latency_label="append latency",
                durable=context.durable,
                operation="append",
            )
        index = index_bytes_per_event(journal)
    figures.append(
        Figure(
            NAME,
            "index_bytes_per_event",
            "index memory per event",
            "bytes",
            summarize([index]),
            durable=context.durable,
            higher_is_better=False,
        )
    )
    return figures


def run(context: BenchContext) -> ScenarioResult:
    figures, elapsed_s = context.run_on_journal(NAME, _measure)
    return context.result(
        NAME,
        TITLE,
        figures,
        elapsed_s=elapsed_s,
        settings={"round_s": context.sizes.round_s, "appenders": list(context.sizes.callers)},
    )
