"""The ``limits`` scenario: the machine's ceilings, measured in the same run as everything else.

A plain ``os.write + os.fdatasync`` loop (from ``benchmarks._baselines``) gives the disk's rate
for one unbatched writer and its latency; orjson encode and decode rates of one event's data
give the CPU's ceiling for touching every event once. Every other figure is shown as a ratio
to these.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from benchmarks._baselines import write_fdatasync_loop

from ._context import BenchContext
from ._results import Figure, ScenarioResult
from ._stats import rate_per_s, summarize

NAME = "limits"
TITLE = "Machine limits: write+fdatasync loop and orjson"

FSYNC_SLOW_MS = 2.0
"""A median write+fdatasync above this is slow for a local SSD: results will be disk-bound."""

FSYNC_NOISY_SPREAD = 1.0
"""(max - min) / median of the chunk latencies above this means the disk is noisy."""

DISK_FIGURES = frozenset({"fdatasync_latency_ms", "fdatasync_per_s", "fdatasync_pre_zeroed_per_s"})
"""The figures of this scenario that the journal directory's filesystem takes part in."""


def _fsync_figures(context: BenchContext) -> list[Figure]:
    sizes = context.sizes
    latencies_ms: list[float] = []
    rates: list[float] = []
    for chunk in range(sizes.fsync_chunks):
        context.progress.step(f"write+fdatasync chunk {chunk + 1}/{sizes.fsync_chunks}")
        result = write_fdatasync_loop(context.directory, operations=sizes.fsync_chunk_writes)
        latencies_ms.append(result.latency_us_mean / 1000.0)
        rates.append(result.operations_per_s)
    context.progress.step("write+fdatasync into a pre-zeroed file")
    zeroed = [
        write_fdatasync_loop(
            context.directory, operations=sizes.fsync_chunk_writes, pre_zeroed=True
        ).operations_per_s
        for _ in range(sizes.repetitions)
    ]
    return [
        Figure(
            NAME,
            "fdatasync_latency_ms",
            "write+fdatasync latency",
            "ms",
            summarize(latencies_ms),
            higher_is_better=False,
        ),
        Figure(NAME, "fdatasync_per_s", "write+fdatasync loop", "/s", summarize(rates)),
        Figure(
            NAME,
            "fdatasync_pre_zeroed_per_s",
            "write+fdatasync loop, pre-zeroed file",
            "/s",
            summarize(zeroed),
        ),
    ]


def _orjson_figures(context: BenchContext, sample: Any) -> list[Figure]:
    count = context.sizes.orjson_values
    values = [sample] * count
    encoded = [orjson.dumps(sample)] * count
    encode_rates: list[float] = []
    decode_rates: list[float] = []
    dumps, loads = orjson.dumps, orjson.loads
    rounds = context.sizes.repetitions + (1 if context.sizes.warmup else 0)
    for repetition in range(rounds):
        context.progress.step(f"orjson repetition {repetition + 1}/{rounds}")
        start = time.perf_counter_ns()
        for value in values:
            dumps(value)
        middle = time.perf_counter_ns()
        for raw in encoded:
            loads(raw)
        end = time.perf_counter_ns()
        if context.sizes.warmup and repetition == 0:
            continue
        encode_rates.append(rate_per_s(count, middle - start))
        decode_rates.append(rate_per_s(count, end - middle))
    return [
        Figure(
            NAME,
            "orjson_encode_per_s",
            "orjson encode of one event's data",
            "/s",
            summarize(encode_rates),
        ),
        Figure(
            NAME,
            "orjson_decode_per_s",
            "orjson decode of one event's data",
            "/s",
            summarize(decode_rates),
        ),
    ]


def fsync_warnings(result: ScenarioResult) -> list[str]:
    """Warnings about the disk, from the limits figures: slow, or noisy between chunks."""
    latency = result.figure("fdatasync_latency_ms").summary
    warnings = []
    if latency.median > FSYNC_SLOW_MS:
        warnings.append(
            f"write+fdatasync takes {latency.median:.2f} ms (median), slower than "
            f"{FSYNC_SLOW_MS} ms: durable figures are disk-bound; measure another disk with "
            f"--journal-dir"
        )
    if latency.spread > FSYNC_NOISY_SPREAD:
        warnings.append(
            f"write+fdatasync latency is noisy ({latency.minimum:.3f} to {latency.maximum:.3f} "
            f"ms between chunks): other I/O is competing for the disk; compare figures with "
            f"care or rerun on a quiet machine"
        )
    return warnings


def run(context: BenchContext) -> ScenarioResult:
    started = time.monotonic()
    sample = context.workload.sample_event_data()
    figures = _fsync_figures(context) + _orjson_figures(context, sample)
    result = ScenarioResult(
        NAME,
        TITLE,
        figures=tuple(figures),
        settings={
            "fsync_chunks": context.sizes.fsync_chunks,
            "fsync_chunk_writes": context.sizes.fsync_chunk_writes,
            "record_bytes": 150,
            "orjson_values": context.sizes.orjson_values,
            "orjson_sample_bytes": len(orjson.dumps(sample)),
        },
    )
    notes = tuple(fsync_warnings(result))
    return ScenarioResult(
        result.name,
        result.title,
        figures=result.figures,
        notes=notes,
        settings=result.settings,
        elapsed_s=time.monotonic() - started,
    )
