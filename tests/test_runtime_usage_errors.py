"""Wrong arguments and wrong answers from user code fail with errors that say what to do."""

from __future__ import annotations

import pytest

from journals import MemoryJournal
from runtime import Runtime
from runtime._exceptions import VersionNotReached

from .test_runtime_bank import Account, Open, account

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
