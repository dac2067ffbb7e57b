"""When an event or a snapshot was recorded: the stamp, as a datetime, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from journals import EMPTY_METADATA, RecordedEvent, Snapshot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=2**62))
def test_recorded_at_is_the_stamp_cut_to_the_microsecond(stamp_ns: int) -> None:
    event = RecordedEvent("s", 1, 1, "T", {}, EMPTY_METADATA, stamp_ns)
    snapshot = Snapshot("s", 1, {}, EMPTY_METADATA, stamp_ns)
    for moment in (event.recorded_at, snapshot.recorded_at):
        assert moment.tzinfo is UTC
        assert (moment - EPOCH) // timedelta(microseconds=1) == stamp_ns // 1_000


def test_a_stamp_past_the_half_microsecond_is_not_rounded_up() -> None:
    # Through a float this read as .123457: a moment after the append was stamped, so a
    # state_at(at=...) for a moment taken right after it could leave the event out.
    event = RecordedEvent("s", 1, 1, "T", {}, EMPTY_METADATA, 1_700_000_000_123_456_789)
    assert event.recorded_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
