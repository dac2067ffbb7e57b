"""How much work each scenario does: the full suite, ``--quick`` and the test suite's tiny run.

Sizes are the only thing that differs between the three; the code measured is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Sizes:
    """Work per scenario. Every figure is measured ``repetitions`` times after one warm-up."""

    repetitions: int
    warmup: bool
    round_s: float
    """How long each timed round lets its callers run (throughput and latency scenarios)."""
    # limits
    fsync_chunks: int
    fsync_chunk_writes: int
    orjson_values: int
    # many-actors
    callers: tuple[int, ...]
    entities: int
    # hot-actor
    hot_in_flight: int
    # activation
    activations: int
    memory_actors: int
    # recovery
    long_stream_events: int
    short_streams: int
    short_stream_events: int
    interleaved_group: int
    """Streams written taking turns, one event each, in the recovery scenario's first
    interleaved shape (its second has all its streams take turns)."""
    reopen_events: int
    snapshot_every: int
    # peer
    peer_entities: int
    peer_callers: tuple[int, ...]
    peer_long_stream_events: int
    peer_short_streams: int
    peer_short_stream_events: int

    def to_json(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((field, getattr(self, field)) for field in self.__slots__)
        }


FULL = Sizes(
    repetitions=3,
    warmup=True,
    round_s=0.75,
    fsync_chunks=10,
    fsync_chunk_writes=200,
    orjson_values=100_000,
    callers=(1, 100, 1_000, 10_000),
    entities=10_000,
    hot_in_flight=1_000,
    activations=10_000,
    memory_actors=2_000,
    long_stream_events=100_000,
    short_streams=2_000,
    short_stream_events=20,
    interleaved_group=16,
    reopen_events=1_000_000,
    snapshot_every=1_000,
    peer_entities=10_000,
    peer_callers=(1, 4),
    peer_long_stream_events=10_000,
    peer_short_streams=500,
    peer_short_stream_events=20,
)
"""The default suite: about a minute on a 2-core machine with a fast disk."""

QUICK = replace(
    FULL,
    fsync_chunks=6,
    fsync_chunk_writes=100,
    orjson_values=30_000,
    round_s=0.1,
    activations=3_000,
    memory_actors=1_000,
    long_stream_events=20_000,
    short_streams=1_000,
    short_stream_events=10,
    reopen_events=100_000,
    snapshot_every=500,
    peer_long_stream_events=5_000,
    peer_short_streams=300,
    peer_short_stream_events=10,
)
"""``--quick``: the same scenarios with less work each, about 15 seconds."""

TINY = Sizes(
    repetitions=2,
    warmup=False,
    round_s=0.02,
    fsync_chunks=2,
    fsync_chunk_writes=10,
    orjson_values=200,
    callers=(1, 10),
    entities=20,
    hot_in_flight=10,
    activations=50,
    memory_actors=50,
    long_stream_events=200,
    short_streams=10,
    short_stream_events=5,
    interleaved_group=4,
    reopen_events=600,
    snapshot_every=50,
    peer_entities=5,
    peer_callers=(1, 2),
    peer_long_stream_events=50,
    peer_short_streams=5,
    peer_short_stream_events=3,
)
"""A run of a fraction of a second per scenario, for the test suite (structure, not speed)."""

PRESETS = {"full": FULL, "quick": QUICK, "tiny": TINY}
