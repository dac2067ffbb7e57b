"""Rebuilding a past state for ``Runtime.state_at``: the checks of its arguments, and the read."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from journals import Journal, JournalClosed

from ._actor import rebuild
from ._aggregate import Aggregate
from ._exceptions import RuntimeClosed, VersionNotReached
from ._initial import check_initial
from ._repeats import Repeats


def check_past(version: object, at: object) -> None:
    """Refuse what ``state_at`` cannot answer, before anything is read."""
    if (version is None) == (at is None):
        raise ValueError("state_at takes exactly one of version=... or at=...")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise ValueError(f"version must be >= 0 and a whole number (an int), not {version!r}")
    if at is not None:
        check_moment(at)


def check_moment(at: object) -> None:
    """``at`` must name one moment: an aware datetime (a ``date`` is a whole day)."""
    if isinstance(at, date) and not isinstance(at, datetime):
        raise TypeError(
            f"at must be a datetime, not a date ({at!r}): a date is a whole day; pass the "
            f"moment meant, such as datetime.combine(day, time(), tzinfo=UTC) for its start"
        )
    if not isinstance(at, datetime):
        raise TypeError(
            f"at must be a timezone-aware datetime, not {type(at).__name__} ({at!r:.100}): "
            f"parse a string with datetime.fromisoformat, and give it a time zone"
        )
    # Aware as Python defines it: a time zone that gives this datetime an offset (a tzinfo
    # whose utcoffset answers None leaves it naive, and it cannot be compared with events).
    if at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime (for example in UTC)")


async def past_state(
    journal: Journal,
    aggregate: Aggregate[Any, Any, Any],
    stream_id: str,
    version: int | None,
    at: datetime | None,
    *,
    owns_journal: bool,
    use_snapshots: bool,
    repeats: Repeats,
) -> Any:
    """The state after the stream's first ``version`` events, or after those recorded up to
    ``at`` (arguments checked by ``check_past``). ``use_snapshots``: a fold to a version
    may start from a snapshot, where activation would (``Engine._uses_snapshots``).

    A journal the runtime owns is open only while the runtime runs: read when it is not,
    it raises ``RuntimeClosed``, as ``state`` does, rather than the journal's
    ``JournalClosed``, which would blame a journal the caller never opened. A journal the
    caller opened is read whether the runtime runs or not.
    """
    if not owns_journal:
        return await _past_state(journal, aggregate, stream_id, version, at, use_snapshots, repeats)
    try:
        return await _past_state(journal, aggregate, stream_id, version, at, use_snapshots, repeats)
    except JournalClosed as error:  # The runtime closed it under the read, as it exited.
        raise owned_journal_not_open() from error


def owned_journal_not_open() -> RuntimeClosed:
    """The error of ``state_at`` on a runtime whose own journal is not open."""
    return RuntimeClosed(
        "the runtime owns its journal (owns_journal=True) and the journal is not open: the "
        "runtime opens it when 'async with Runtime(...)' is entered and closes it on exit. "
        "Call state_at inside that block, or open the journal yourself and pass "
        "owns_journal=False to read past states after the runtime has stopped"
    )


async def _past_state(
    journal: Journal,
    aggregate: Aggregate[Any, Any, Any],
    stream_id: str,
    version: int | None,
    at: datetime | None,
    use_snapshots: bool,
    repeats: Repeats,
) -> Any:
    if version == 0:
        # Nothing to fold, but the journal is asked as for any other version: it refuses a
        # stream id it could never hold, and answers only while it is open.
        await journal.stream_version(stream_id)
        if aggregate._initial_copy is not None:
            check_initial(aggregate.name, aggregate.initial, aggregate._initial_copy)
        return aggregate.initial
    if version is not None:
        # Refused before folding: otherwise the whole history is read and folded, through
        # the user's code, only to be thrown away.
        durable = await journal.stream_version(stream_id)
        if durable < version:
            raise VersionNotReached(stream_id, version, durable)
    state, reached, _ = await rebuild(
        journal,
        aggregate,
        stream_id,
        to_version=version,
        until=at,
        use_snapshots=use_snapshots,
        repeats=repeats,
    )
    # A durable version never goes down, so the fold reaches ``version``, unless the journal
    # answers fewer events than it said it held.
    if version is not None and reached < version:
        raise VersionNotReached(stream_id, version, reached)
    return state
