"""Snapshots are encoded when taken: of the state at their version, failures logged once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import pytest

from journals import MemoryJournal
from runtime import Aggregate, Runtime

from .test_runtime_bank import Account, Deposit, Open, make_account
from .test_runtime_manual_journal import ManualJournal


def runtime_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "eventfold.runtime"]


# -- a state that cannot be encoded ------------------------------------------------------------

ENCODINGS: dict[str, Callable[[Account], Any]] = {
    "encode_state raises": lambda state: 1 / 0,
    "JSON cannot hold it": lambda state: {"balance": Decimal(state.balance)},
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.anyio
async def test_snapshots_that_cannot_be_encoded_are_counted_and_logged_once(
    encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def encode(state: Account) -> Any:
        calls.append(state.deposits)
        return ENCODINGS[encoding](state)

    every_two = make_account(snapshot_every=2, encode_state=encode)
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        for entity in ("a", "b"):
            await rt.ask(every_two, entity, Open(entity))
            for amount in range(1, 10):  # versions 2 to 10: five snapshots due per entity
                await rt.ask(every_two, entity, Deposit(amount))
        await anyio.wait_all_tasks_blocked()
        statistics = rt.statistics()
        assert (statistics.snapshots, statistics.snapshots_skipped) == (0, 10)
        # Tried when due, not again at every command after a failure.
        assert len(calls) == 10
        assert await journal.load_snapshot("account-a") is None
    [record] = runtime_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    message = record.getMessage()
    assert message.startswith("no snapshot of 'account-a' taken: encode_state raised, or")
    assert "aggregate 'account' that fail so are counted in statistics().snapshots_skipped" in (
        message
    )


# -- a snapshot is of the state at its version -------------------------------------------------


@dataclass(frozen=True)
class Add:
    sku: str


@dataclass(frozen=True)
class Added:
    sku: str


@dataclass(frozen=True)
class Cart:
    lines: dict[str, int] = field(default_factory=dict)


def cart_evolve(state: Cart, event: Added) -> Cart:
    # Against the rule (evolve returns a new state): the dictionary is changed in place.
    lines = state.lines or {}
    lines[event.sku] = lines.get(event.sku, 0) + 1
    return Cart(lines)


@pytest.mark.anyio
async def test_a_snapshot_holds_its_version_even_when_evolve_changes_the_state_in_place() -> None:
    cart: Aggregate[Cart, Add, Added] = Aggregate(
        "cart",
        Cart(),
        lambda state, command: [Added(command.sku)],
        cart_evolve,
        events={"Added": Added},
        snapshot_every=5,
    )
    journal = ManualJournal(start_appends=True)
    async with Runtime(journal) as rt, anyio.create_task_group() as tg:
        for _ in range(7):  # all decided before the fifth is durable and its snapshot queued
            tg.start_soon(rt.ask, cart, "1", Add("a"))
        await anyio.wait_all_tasks_blocked()
        journal.commit()
    [snapshot] = journal.snapshots["cart-1"]
    assert (snapshot.version, snapshot.data) == (5, {"lines": {"a": 5}})
