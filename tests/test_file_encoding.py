"""The FileJournal's append encoding: events given as columns encode as NewEvent lists do."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journals import FileJournal, NewEvent, _file_encoding
from journals._committer import CommitQueue
from journals._file_encoding import (
    encode_columns,
    encode_events,
    encode_stream_id,
    remembered_stream_id,
)

from .examples import examples


@dataclass(frozen=True, slots=True)
class Slotted:
    amount: int
    note: str


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
data_values = st.one_of(
    json_values,
    st.builds(Slotted, st.integers(-(2**70), 2**70), st.text()),  # Too large for orjson: refused.
    st.sets(st.integers(), max_size=2),  # Not JSON: refused.
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),  # Non-str keys.
)
type_names = st.one_of(
    st.sampled_from(["Deposited/1", "orders.Placed/2"]),
    st.text(max_size=300),  # Empty and too long ones are refused.
    st.integers(),  # Not a str: refused.
    st.lists(st.text(), max_size=1),  # Not even hashable: refused all the same.
)


def _outcome(encode: Any, *arguments: Any) -> Any:
    try:
        return encode(*arguments)
    except Exception as error:  # Compared by kind and message below.
        return (type(error), str(error))


@given(st.lists(st.tuples(type_names, data_values), max_size=4))
def test_columns_encode_exactly_as_their_new_events_do(events: list[tuple[Any, Any]]) -> None:
    types = [event_type for event_type, _ in events]
    data = [value for _, value in events]
    expected = _outcome(encode_events, [NewEvent(t, d) for t, d in events])
    # Twice: the first call of a new type name takes the checked path, later ones the fast path.
    assert _outcome(encode_columns, types, data) == expected
    assert _outcome(encode_columns, types, data) == expected


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 event types but 1 data values"):
        encode_columns(["A", "B"], [1])
    with pytest.raises(ValueError, match="1 event types but 2 data values"):
        encode_columns(["A"], [1, 2])


stream_ids = st.one_of(
    st.sampled_from(["account-42", "hot"]),
    st.text(max_size=300),  # Empty, too long and unencodable ones are refused.
    st.integers(),  # Not a str: refused.
    st.lists(st.text(), max_size=1),  # Not even hashable: refused all the same.
)


@given(st.lists(stream_ids, max_size=6))
def test_remembered_stream_ids_encode_as_they_are_checked(ids: list[Any]) -> None:
    # Each id twice: the second answer may come from what the first remembered.
    for stream_id in ids + ids:
        assert _outcome(remembered_stream_id, stream_id) == _outcome(encode_stream_id, stream_id)


def test_remembered_stream_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_file_encoding, "_STREAM_BYTES", {})
    monkeypatch.setattr(_file_encoding, "_STREAM_BYTES_MAX", 3)
    for index in range(10):
        assert remembered_stream_id(f"stream-{index}") == f"stream-{index}".encode()
        assert len(_file_encoding._STREAM_BYTES) <= 3


one_event_appends = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from(["Deposited/1", "orders.Placed/2", ""]),  # "" is refused.
        st.one_of(st.integers(), st.text(max_size=5), st.sets(st.integers(), max_size=1)),
        st.one_of(st.none(), st.integers(-1, 4)),  # Expected version: right, wrong or bad.
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=examples(40), deadline=None)
@given(appends=one_event_appends)
def test_one_event_column_appends_write_what_new_events_write(
    appends: list[tuple[str, str, Any, int | None]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The one-event path (``place_one``) and the general one: the same answers, the same
    refusals with the same messages, the same bytes on disk."""
    directories = [tmp_path_factory.mktemp("columns"), tmp_path_factory.mktemp("new-events")]
    placed_one = 0
    original = CommitQueue.place_one

    def counting(queue: CommitQueue, *arguments: Any) -> Any:
        nonlocal placed_one
        placed_one += 1
        return original(queue, *arguments)

    async def append(
        journal: FileJournal,
        by_columns: bool,
        stream: str,
        event_type: str,
        data: Any,
        expected: int | None,
    ) -> Any:
        try:
            if by_columns:
                started = journal.start_append_columns(
                    stream, [event_type], [data], expected_version=expected
                )
            else:
                events = [NewEvent(event_type, data)]
                started = journal.start_append(stream, events, expected_version=expected)
        except Exception as error:
            return type(error), str(error)
        assert started is not None
        durable, outcome, version, position = started
        await durable
        outcome.raise_error()
        return version, position

    accepted_types: list[str] = []

    async def run() -> None:
        journals = [FileJournal(directory / "j") for directory in directories]
        async with journals[0] as by_columns, journals[1] as by_events:
            for stream, event_type, data, expected in appends:
                ours = await append(by_columns, True, stream, event_type, data, expected)
                theirs = await append(by_events, False, stream, event_type, data, expected)
                assert ours == theirs
                if isinstance(ours[0], int):
                    accepted_types.append(event_type)

    with pytest.MonkeyPatch.context() as patch:
        # One time for every record: the two journals' bytes can then be compared.
        patch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)
        patch.setattr(CommitQueue, "place_one", counting)
        anyio.run(run)
    logs = [sorted((directory / "j").glob("*.log")) for directory in directories]
    assert [path.name for path in logs[0]] == [path.name for path in logs[1]]
    for ours, theirs in zip(*logs, strict=True):
        assert ours.read_bytes() == theirs.read_bytes()
    if len(set(accepted_types)) < len(accepted_types):
        assert placed_one > 0, "an accepted type seen before takes the one-event path"
