"""Wrong arguments and wrong answers from user code fail with errors that say what to do."""

from __future__ import annotations

import pytest

from journals import MemoryJournal
from runtime import Aggregate, Runtime
from runtime._exceptions import VersionNotReached

from .test_runtime_bank import EVENTS, Account, Deposit, Open, account, evolve

# -- state_at beyond the entity's history ----------------------------------------------------


@pytest.mark.anyio
async def test_state_at_a_version_the_entity_never_had_is_refused() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(account, "42", Open("ada"))
        assert await rt.state_at(account, "42", version=1) == Account("ada")
        with pytest.raises(
            VersionNotReached,
            match=r"'account-42' has 1 durable event, so it never had version 5; "
            r"ask for a version from 0 \(the initial state\) to 1",
        ) as raised:
            await rt.state_at(account, "42", version=5)
        assert (raised.value.stream_id, raised.value.version, raised.value.durable_version) == (
            "account-42",
            5,
            1,
        )
        assert isinstance(raised.value, ValueError)


@pytest.mark.anyio
async def test_state_at_a_version_of_an_entity_without_events_is_refused() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        assert await rt.state_at(account, "nobody", version=0) == Account()
        with pytest.raises(VersionNotReached, match="'account-nobody' has no events"):
            await rt.state_at(account, "nobody", version=3)


# -- aggregate names -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_second_aggregate_with_a_taken_name_is_refused_even_after_eviction() -> None:
    first = Aggregate("account", Account(), account.decide, evolve, events=EVENTS)
    second = Aggregate("account", Account(), account.decide, evolve, events=EVENTS)
    async with MemoryJournal() as journal, Runtime(journal, max_live_actors=1) as rt:
        await rt.ask(first, "x", Open("ada"))
        await rt.ask(first, "y", Open("bob"))  # evicts account-x
        assert rt.statistics().live_actors == 1
        with pytest.raises(ValueError, match="aggregate names must be unique in a runtime"):
            await rt.ask(second, "x", Deposit(1))
        with pytest.raises(ValueError, match="aggregate names must be unique in a runtime"):
            await rt.ask(second, "new", Open("cy"))
        assert await rt.state(first, "x") == Account("ada")
        assert await journal.stream_version("account-new") == 0
