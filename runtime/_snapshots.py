"""Taking a snapshot: the state encoded as it will be stored.

A snapshot is encoded when it is taken (every ``snapshot_every`` events, or on passivation),
never per command, and before anything yields: what is stored is the state at its version,
even if a later ``evolve`` changes that object in place.

Snapshots that cannot be taken are counted by the engine (``snapshots_skipped``) and logged
once per aggregate and kind of failure: the same shape of state fails the same way at every
snapshot of every entity, and one log record with its reason says all there is to say.
"""

from __future__ import annotations

from typing import Any

from journals import decode_data, encode_data

from ._actor import SNAPSHOT_AGGREGATE_KEY, SNAPSHOT_SCHEMA_KEY, logger
from ._aggregate import Aggregate

_NOT_LOGGED_AGAIN = (
    "Later snapshots of aggregate %r that fail so are counted in "
    "statistics().snapshots_skipped and not logged."
)


class SnapshotEncoder:
    """Encodes the states of one runtime's snapshots; remembers which failures it logged."""

    __slots__ = ("_logged",)

    def __init__(self) -> None:
        self._logged: set[tuple[str, str]] = set()

    def encode(
        self, aggregate: Aggregate[Any, Any, Any], stream_id: str, state: Any
    ) -> tuple[Any, dict[str, Any]] | None:
        """The data and metadata to store for a snapshot of ``state``, or None when it cannot
        be taken (logged, the first time for this aggregate).

        The data is the JSON value the journal stores, decoded from the bytes encoded now:
        plain dicts, lists and scalars that nothing else holds a reference to.
        """
        name = aggregate.name
        try:
            encoded = encode_data(aggregate.encode_state(state), "snapshot data")
        except Exception:
            if self._first(name, "encode"):
                logger.error(
                    "no snapshot of %r taken: encode_state raised, or what it returned cannot "
                    "be stored as JSON (see the traceback). " + _NOT_LOGGED_AGAIN,
                    stream_id,
                    name,
                    exc_info=True,
                )
            return None
        metadata = {SNAPSHOT_AGGREGATE_KEY: name, SNAPSHOT_SCHEMA_KEY: aggregate.snapshot_schema}
        return decode_data(encoded), metadata

    def _first(self, aggregate: str, kind: str) -> bool:
        """Whether this is the first failure of this kind for this aggregate."""
        key = (aggregate, kind)
        if key in self._logged:
            return False
        self._logged.add(key)
        return True
