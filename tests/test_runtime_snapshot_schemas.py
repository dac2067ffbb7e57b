"""Snapshot schemas: which stored snapshot activation and state_at start from, and what a
snapshot of another schema or shape of the state costs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from journals import FileJournal, Journal, MemoryJournal
from runtime import Runtime, SnapshotShapeMismatch

from .test_runtime_bank import Account, Deposit, Open, make_account

# Snapshots are consulted for aggregates that take them (or with snapshot_on_passivation).
snapshotting = make_account(snapshot_every=100)


@pytest.mark.anyio
async def test_activation_starts_from_a_snapshot_of_the_current_schema() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
            await rt.ask(snapshotting, "42", Deposit(5))
            await rt.ask(snapshotting, "42", Deposit(6))
        # A snapshot that disagrees with the events shows which one activation used.
        marked = {"owner": "from-snapshot", "balance": 1000, "deposits": 0}
        await journal.save_snapshot("account-42", 2, marked, {"aggregate": "account", "schema": 1})
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("from-snapshot", 1006, 1)


@pytest.mark.parametrize(
    "metadata",
    [
        {"aggregate": "account", "schema": 2},
        {"aggregate": "account"},
        {"aggregate": "other", "schema": 1},
        {},
    ],
)
@pytest.mark.anyio
async def test_a_snapshot_of_another_schema_is_ignored(metadata: dict[str, object]) -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
            await rt.ask(snapshotting, "42", Deposit(5))
        # Same field names, another meaning: must never be read as this schema.
        await journal.save_snapshot("account-42", 2, {"owner": "x", "balance": 1}, metadata)
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("ada", 5, 1)


class _DefaultLookup(MemoryJournal):
    """A journal that looks snapshots up by metadata as the ``Journal`` ABC does."""

    load_snapshot_matching = Journal.load_snapshot_matching


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["memory", "file", "default"])
async def test_after_a_rollback_of_a_schema_bump_the_latest_snapshot_of_the_schema_is_used(
    backend: str, tmp_path: Path
) -> None:
    # The code that bumped snapshot_schema to 2 wrote the newer snapshots; the code rolled
    # back to reads schema 1. "default" is a journal with the ABC's own lookup by metadata.
    journal: Journal = {
        "memory": MemoryJournal,
        "file": lambda: FileJournal(tmp_path / "journal"),
        "default": _DefaultLookup,
    }[backend]()
    async with journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
            for amount in (5, 6, 7, 8):
                await rt.ask(snapshotting, "42", Deposit(amount))
        # A snapshot that disagrees with the events shows which one is used.
        marked = {"owner": "from-schema-1", "balance": 1000, "deposits": 0}
        await journal.save_snapshot("account-42", 2, marked, {"aggregate": "account", "schema": 1})
        for version in (3, 4):
            await journal.save_snapshot(
                "account-42", version, {"shape": "new"}, {"aggregate": "account", "schema": 2}
            )
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("from-schema-1", 1021, 3)
            assert await rt.state_at(snapshotting, "42", version=4) == Account(
                "from-schema-1", 1013, 2
            )
            assert await rt.state_at(snapshotting, "42", version=1) == Account("ada", 0, 0)


class _CountedLookups(MemoryJournal):
    """Counts the lookups of snapshots by metadata."""

    lookups_by_metadata = 0

    async def load_snapshot_matching(self, *args: Any, **kwargs: Any) -> Any:
        self.lookups_by_metadata += 1
        return await super().load_snapshot_matching(*args, **kwargs)


@pytest.mark.anyio
async def test_only_a_newest_snapshot_of_another_schema_costs_a_lookup_by_metadata() -> None:
    # The common case, a newest snapshot of the schema, costs one lookup, as it always did.
    async with _CountedLookups() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
            await rt.ask(snapshotting, "42", Deposit(5))
        of_schema = {"aggregate": "account", "schema": 1}
        await journal.save_snapshot("account-42", 1, {"shape": "new"}, {**of_schema, "schema": 2})
        await journal.save_snapshot(
            "account-42", 2, {"owner": "ada", "balance": 5, "deposits": 1}, of_schema
        )
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("ada", 5, 1)
            assert await rt.state_at(snapshotting, "42", version=2) == Account("ada", 5, 1)
            assert journal.lookups_by_metadata == 0
            assert await rt.state_at(snapshotting, "42", version=1) == Account("ada", 0, 0)
            assert journal.lookups_by_metadata == 1


@pytest.mark.anyio
async def test_an_undecodable_snapshot_falls_back_to_full_replay() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
        await journal.save_snapshot(
            "account-42", 1, {"bad": 1}, {"aggregate": "account", "schema": 1}
        )
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("ada", 0, 0)


@pytest.mark.anyio
async def test_a_snapshot_of_an_earlier_shape_of_the_state_is_not_filled_with_defaults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The state gained the field "deposits" (default 0) and snapshot_schema stayed 1: the
    # snapshot taken before must not be read as a state with no deposits.
    caplog.set_level(logging.DEBUG, logger="eventfold.runtime")
    async with MemoryJournal() as journal:
        async with Runtime(journal) as rt:
            await rt.ask(snapshotting, "42", Open("ada"))
            await rt.ask(snapshotting, "42", Deposit(5))
            await rt.ask(snapshotting, "42", Deposit(6))
        earlier_shape = {"owner": "ada", "balance": 5}
        await journal.save_snapshot(
            "account-42", 2, earlier_shape, {"aggregate": "account", "schema": 1}
        )
        async with Runtime(journal) as rt:
            assert await rt.state(snapshotting, "42") == Account("ada", 11, 2)
            assert await rt.state_at(snapshotting, "42", version=2) == Account("ada", 5, 1)
    records = [r for r in caplog.records if r.name == "eventfold.runtime"]
    # Every entity snapshotted before the change has such a snapshot: the first skip is a
    # warning, the next ones (here state_at's) a line at debug level, not one warning each.
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG]
    warnings = [r.getMessage() for r in records]
    assert warnings[1].startswith(
        "snapshot of 'account-42' at version 2 is skipped, the events are folded instead: the "
        "snapshot data holds no field 'deposits'"
    )
    assert warnings[0].endswith(
        "Later snapshots of 'account' skipped so in the next minute are logged at debug level"
    )
    assert warnings[0].startswith(
        "snapshot of 'account-42' at version 2 is skipped, the events are folded instead: the "
        "snapshot data holds no field 'deposits' of Account (its keys: ['owner', 'balance'])"
    )
    assert "Bump the aggregate's snapshot_schema whenever the state's shape changes" in warnings[0]


def test_the_default_decode_state_refuses_data_of_another_shape() -> None:
    decode = snapshotting.decode_state
    assert decode({"owner": "ada", "balance": 5, "deposits": 1}) == Account("ada", 5, 1)
    with pytest.raises(SnapshotShapeMismatch, match=r"no field 'deposits' of Account") as info:
        decode({"owner": "ada", "balance": 5})
    assert isinstance(info.value, TypeError)
    assert (info.value.missing, info.value.unknown) == (["deposits"], [])
    with pytest.raises(SnapshotShapeMismatch, match=r"holds 'total', which Account has no"):
        decode({"owner": "ada", "balance": 5, "deposits": 1, "total": 5})
