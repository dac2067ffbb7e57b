"""``state_at(at=moment)`` against a plain fold, for any stamps and any moment.

The journal stamps each append with its wall clock, which may give appends one stamp or step
back. Whatever the stamps and the moment's time zone, the answer is the fold of the longest
prefix of appends whose stamps, cut to the microsecond, are at or before the moment: a state
the entity had. Both journals, read through a runtime that is not entered (``state_at``
reads the journal alone), on asyncio and trio.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import SimpleNamespace
from unittest import mock
from zoneinfo import ZoneInfo

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import journals._file_journal
import journals._memory
from journals import FileJournal, Journal, MemoryJournal, NewEvent
from runtime import Runtime

from .examples import examples
from .test_runtime_bank import Account, Deposited, account

# The moment New York's clocks jumped from 02:00 to 03:00: a moment a microsecond before it
# reads 01:59:59.999999 there, one at it 03:00.
START = datetime(2024, 3, 10, 7, 0, tzinfo=UTC)
START_NS = (START - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1_000

ZONES: list[tzinfo] = [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("America/New_York")]

# Stamps a few microseconds apart, with a part below the microsecond: equal stamps, stamps
# that step back and stamps that differ only below the microsecond all come up.
stamps_ns = st.builds(
    lambda micros, below: START_NS + micros * 1_000 + below,
    st.integers(0, 6),
    st.sampled_from([0, 1, 499, 500, 999]),
)
appends = st.lists(st.tuples(stamps_ns, st.integers(1, 3)), min_size=1, max_size=8)


def expected(history: list[tuple[int, int]], moment: datetime) -> Account:
    """The fold of the appends before the first one stamped after ``moment``."""
    moment_micros = (moment - START) // timedelta(microseconds=1)
    state = account.initial
    amount = 0
    for stamp_ns, count in history:
        if (stamp_ns - START_NS) // 1_000 > moment_micros:
            break
        for _ in range(count):
            amount += 1
            state = account.evolve(state, Deposited(amount))
    return state


@contextmanager
def stamped(stamps: list[int]) -> Iterator[None]:
    """Make both journals stamp their appends with ``stamps``, in order."""
    clock = SimpleNamespace(time_ns=iter(stamps).__next__)
    with (
        mock.patch.object(journals._memory, "time", clock),
        mock.patch.object(journals._file_journal, "time", clock),
    ):
        yield


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["memory", "file"])
@settings(max_examples=examples(25), deadline=None)
@given(history=appends, micros=st.integers(-1, 7), zone=st.sampled_from(ZONES))
def test_a_past_state_at_a_moment_folds_the_appends_stamped_up_to_it(
    backend: str, kind: str, history: list[tuple[int, int]], micros: int, zone: tzinfo
) -> None:
    moment = (START + timedelta(microseconds=micros)).astimezone(zone)

    async def main(directory: str) -> Account:
        journal: Journal = MemoryJournal() if kind == "memory" else FileJournal(directory)
        amount = 0
        async with journal:
            with stamped([stamp for stamp, _ in history]):
                for _, count in history:
                    events = []
                    for _ in range(count):
                        amount += 1
                        events.append(NewEvent("account.Deposited/1", {"amount": amount}))
                    await journal.append("account-1", events, expected_version=None)
            return await Runtime(journal).state_at(account, "1", at=moment)

    with tempfile.TemporaryDirectory() as directory:
        got = anyio.run(main, directory + "/journal", backend=backend)
    assert got == expected(history, moment)
