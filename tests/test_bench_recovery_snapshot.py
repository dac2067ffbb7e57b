"""The recovery scenario says why a user's aggregate left it without its snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.harness import TINY, BenchContext, Progress, Workload
from benchmarks.harness import _recovery as recovery
from runtime import Aggregate


@dataclass(frozen=True)
class Add:
    item: int


@dataclass(frozen=True)
class Added:
    item: int


class Bag:
    """A state that JSON cannot hold."""

    def __init__(self, items: frozenset[int] = frozenset()) -> None:
        self.items = items


BAGS: Aggregate[Bag, Add, Added] = Aggregate(
    "bags",
    Bag(),
    lambda state, command: [Added(command.item)],
    lambda state, event: Bag(state.items | {event.item}),
    events={"Added": Added},
)


def test_a_state_that_cannot_be_snapshotted_is_named_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = BenchContext(
        sizes=TINY,
        directory=tmp_path,
        workload=Workload(BAGS, lambda entity_id, index: Add(index), "bags"),
        progress=Progress(enabled=False),
    )
    with pytest.raises(
        RuntimeError,
        match=r"stored no snapshot at version 200 \(None\); .*; the runtime could not take it "
        r"\(the state of 'bags' cannot be stored as JSON .*\): give the Aggregate an "
        r"encode_state and a decode_state",
    ):
        recovery.run(context)
    assert "no snapshot of 'bags-long-snapshotted' taken" in caplog.text
