"""The runtime on a FileJournal under uvloop, the loop throughput users run it on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio

from journals import FileJournal
from runtime import Aggregate, Runtime


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class Added:
    amount: int


@dataclass(frozen=True)
class Total:
    value: int = 0


def _decide(state: Total, command: Add) -> list[Added]:
    return [Added(command.amount)]


def _evolve(state: Total, event: Added) -> Total:
    return Total(state.value + event.amount)


total = Aggregate("total", Total(), _decide, _evolve, events={"Added": Added})


def test_concurrent_commands_on_uvloop_are_durable_and_in_order(tmp_path: Path) -> None:
    answers: dict[str, list[int]] = {}

    async def caller(runtime: Runtime, entity: str) -> None:
        for amount in range(1, 51):
            result = await runtime.ask(total, entity, Add(amount))
            answers.setdefault(entity, []).append(result.version)

    async def main() -> None:
        async with (
            FileJournal(tmp_path / "journal") as journal,
            Runtime(journal) as runtime,
            anyio.create_task_group() as group,
        ):
            for entity in range(20):
                group.start_soon(caller, runtime, f"e{entity}")
        async with FileJournal(tmp_path / "journal") as journal, Runtime(journal) as runtime:
            for entity in range(20):
                assert await runtime.state(total, f"e{entity}") == Total(sum(range(1, 51)))

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert answers == {f"e{entity}": list(range(1, 51)) for entity in range(20)}
