"""Event and snapshot data with a NaN or an infinity: refused, never stored as ``null``.

orjson writes non-finite floats as ``null``; a journal that took them would acknowledge one
value and store another. Every encoding path refuses them, and every value it takes reads
back equal.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import EventEncodingError, MemoryJournal, NewEvent
from journals._encoding import encode_data, non_finite_float_at
from journals._file_encoding import encode_columns, encode_events

from .examples import examples

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()  # NaN and both infinities included.
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def holds_non_finite(value: Any) -> bool:
    """The reference answer, for JSON-shaped values only."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(holds_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_non_finite(item) for item in value)
    return False


def _encoded_or_error(value: Any) -> list[bytes] | type[Exception]:
    """The data bytes each encoding path produces for ``value``, or the error they raise."""
    answers: list[Any] = []
    encoders: tuple[Callable[[], list[bytes]], ...] = (
        lambda: [encode_data(value, "data")],
        lambda: [data for _, _, data in encode_events([NewEvent("T", value)])],
        lambda: [metadata for _, metadata, _ in encode_events([NewEvent("T", 1, {"m": value})])],
        lambda: [data for _, _, data in encode_columns(["T"], [value])],  # One event.
        lambda: [data for _, _, data in encode_columns(["T", "T"], [value, value])],
    )
    for encode in encoders:
        try:
            answers.append(encode())
        except EventEncodingError as error:
            answers.append(EventEncodingError)
            message = str(error)
        else:
            continue
        assert "non-finite float" in message
    kinds = {answer is EventEncodingError for answer in answers}
    assert len(kinds) == 1, answers  # Every path answers alike.
    return EventEncodingError if answers[0] is EventEncodingError else answers[1]


@given(json_values)
def test_every_encoding_path_refuses_non_finite_floats_and_round_trips_the_rest(
    value: Any,
) -> None:
    outcome = _encoded_or_error(value)
    if holds_non_finite(value):
        assert outcome is EventEncodingError
    else:
        assert not isinstance(outcome, type)
        assert orjson.loads(outcome[0]) == value


@settings(max_examples=examples(50), deadline=None)
@given(json_values)
def test_a_memory_journal_stores_exactly_what_it_acknowledges(value: Any) -> None:
    async def main() -> None:
        async with MemoryJournal() as journal:
            try:
                await journal.append("s", [NewEvent("T", value)], expected_version=0)
            except EventEncodingError:
                assert holds_non_finite(value)
                assert await journal.head_position() == 0
                return
            assert not holds_non_finite(value)
            (event,) = [event async for event in journal.read("s")]
            assert event.data == value

    anyio.run(main)


class Colour(enum.Enum):
    RED = 1.0
    BROKEN = math.inf


@dataclass(frozen=True)
class Reading:
    value: float
    _cache: float = math.nan  # orjson leaves out fields starting with "_".


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (Reading(math.nan), "nan at the value['value']"),
        ({"c": Colour.BROKEN}, "inf at the value['c'].value"),
        ((1, [2, -math.inf]), "-inf at the value[1][1]"),
    ],
)
def test_non_finite_floats_inside_what_orjson_serializes_are_found(value: Any, where: str) -> None:
    assert non_finite_float_at(value) == where
    with pytest.raises(EventEncodingError, match=r"holds a non-finite float .*Nothing"):
        encode_data(value, "data")


def test_fields_orjson_leaves_out_and_plain_nulls_are_accepted() -> None:
    for value in (Reading(1.5), {"c": Colour.RED, "n": None, "s": "null"}):
        assert non_finite_float_at(value) is None
        assert encode_data(value, "data") == orjson.dumps(value)
