"""Goodput under overload: acknowledged commands/s when callers give up and retry.

Run: ``python -m benchmarks.overload_goodput [--seconds 2] [--backend asyncio|trio]``

Ten times as many ``ask`` callers as the mailboxes hold (1,600 callers on 20 entities with a
mailbox bound of 8, on a FileJournal in a temporary directory) send one-event commands in a
loop. The baseline is the same callers without a timeout: they wait for room as long as it
takes, so the runtime is kept busy with commands only. Then the same callers use
``ask(timeout_s=0.02)`` (shorter than the wait for room, so most attempts time out) and
``ask(timeout_s=1.0)`` (longer than any wait: the cost of a deadline that is never reached).
After each ``MailboxTimeout`` a caller pauses for a jittered 0-20 ms, as a well-behaved
client does, and tries again. Each run starts a fresh journal and runtime.

Printed for each: acknowledged commands/s, timeouts/s, the time to the first answer, and the
ratio to the baseline. Goodput that stays near the baseline means timeouts are cheap and the
runtime keeps serving callers that can still be served.
"""

from __future__ import annotations

import argparse
import itertools
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import anyio

from benchmarks._arguments import positive_seconds
from journals import FileJournal
from runtime import Aggregate, MailboxTimeout, Runtime

ENTITIES = 20
MAILBOX_BOUND = 8
CALLERS = 10 * ENTITIES * MAILBOX_BOUND
RETRY_PAUSE_MAX_S = 0.02
TIMEOUTS_S: tuple[float | None, ...] = (None, 0.02, 1.0)


@dataclass(frozen=True, slots=True)
class Add:
    id: int


@dataclass(frozen=True, slots=True)
class Added:
    id: int


def _decide(state: int, command: Add) -> list[Added]:
    return [Added(command.id)]


def _evolve(state: int, event: Added) -> int:
    return state + 1


COUNTER: Aggregate[int, Add, Added] = Aggregate(
    "counter", 0, _decide, _evolve, events={"Added": Added}
)


@dataclass(slots=True)
class Tally:
    acknowledged: int = 0
    timeouts: int = 0
    first_answer_s: float | None = None


@dataclass(frozen=True, slots=True)
class Goodput:
    timeout_s: float | None
    acknowledged_per_s: float
    timeouts_per_s: float
    first_answer_s: float | None


async def _caller(
    runtime: Runtime, tally: Tally, seed: int, timeout_s: float | None, started: float
) -> None:
    rng = random.Random(seed)
    ids = itertools.count()
    while True:
        entity = f"c{rng.randrange(ENTITIES)}"
        try:
            await runtime.ask(COUNTER, entity, Add(next(ids)), timeout_s=timeout_s)
        except MailboxTimeout:
            tally.timeouts += 1
            await anyio.sleep(rng.uniform(0.0, RETRY_PAUSE_MAX_S))
            continue
        tally.acknowledged += 1
        if tally.first_answer_s is None:
            tally.first_answer_s = anyio.current_time() - started


async def measure(directory: Path, timeout_s: float | None, seconds: float) -> Goodput:
    """Run ``CALLERS`` callers with ``timeout_s`` for ``seconds`` on a fresh FileJournal."""
    tally = Tally()
    async with (
        FileJournal(directory) as journal,
        Runtime(journal, mailbox_bound=MAILBOX_BOUND) as runtime,
    ):
        started = anyio.current_time()
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as group:
                for seed in range(CALLERS):
                    group.start_soon(_caller, runtime, tally, seed, timeout_s, started)
        elapsed = anyio.current_time() - started
    return Goodput(
        timeout_s, tally.acknowledged / elapsed, tally.timeouts / elapsed, tally.first_answer_s
    )


def _label(timeout_s: float | None) -> str:
    return "no timeout (baseline)" if timeout_s is None else f"timeout_s={timeout_s:g}"


async def _main(seconds: float) -> None:
    results: list[Goodput] = []
    with tempfile.TemporaryDirectory() as scratch:
        for number, timeout_s in enumerate(TIMEOUTS_S):
            results.append(await measure(Path(scratch) / f"run-{number}", timeout_s, seconds))
    baseline = results[0].acknowledged_per_s
    print(
        f"{CALLERS:,} callers on {ENTITIES} entities, mailbox bound {MAILBOX_BOUND}, "
        f"{seconds:g} s each, FileJournal"
    )
    print(f"{'':24}{'acknowledged/s':>16}{'timeouts/s':>12}{'first answer':>14}{'ratio':>8}")
    for result in results:
        first = "-" if result.first_answer_s is None else f"{result.first_answer_s * 1000:.0f} ms"
        ratio = result.acknowledged_per_s / baseline if baseline else 0.0
        print(
            f"{_label(result.timeout_s):24}{result.acknowledged_per_s:>16,.0f}"
            f"{result.timeouts_per_s:>12,.0f}{first:>14}{ratio:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=positive_seconds, default=2.0, help="length of each run")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    arguments = parser.parse_args()
    anyio.run(_main, arguments.seconds, backend=arguments.backend)


if __name__ == "__main__":
    main()
