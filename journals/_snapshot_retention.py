"""Which snapshots a compaction of the snapshot file keeps, and when compacting is worth it.

Pure functions over versions and byte counts; ``_snapshot_compaction`` does the file work.

A stream's snapshots serve two readers. Activation wants the newest. ``state_at(version=N)``
(``load_snapshot(max_version=N)``) wants the newest at or below ``N``: without it the state is
still right, only the replay is longer. Keeping every snapshot keeps the file growing with
history; keeping only the newest makes every past state a replay from the stream's start. The
middle way kept here is logarithmic: the newest snapshot, the oldest, and for every ``k`` the
newest snapshot at or below the boundary

    b(k) = floor(H / 2**k) * 2**k - 2**k        (H: the newest snapshot's version)

which lies between ``2**k`` and ``2**(k+1)`` versions below ``H``. So a stream keeps at most
``H.bit_length() + 2`` snapshots (about 16 for a million events snapshotted every 100), and a
past state ``D`` versions below ``H`` replays fewer than ``3 * D`` events more than the longest
gap between the stream's snapshots: recent states stay cheap, old ones cost about what their
distance costs anyway.

The boundaries are aligned to powers of two, so they are stable as ``H`` grows: every boundary
of a later ``H`` is a boundary of the earlier one, or lies at or above it. Compacting in many
steps therefore keeps exactly what one compaction of the whole history would keep, and a
snapshot that a compaction dropped is never one a later compaction would have kept.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

COMPACT_DEAD_BYTES_MIN = 1 << 20
"""The snapshot file is compacted (at open, or after a save) only once the snapshots it would
drop hold at least this many bytes (and half the file): a small file is not worth a rewrite."""
COMPACT_GROWTH_FACTOR = 2
"""While the journal is open, a save looks at what a compaction would drop only once the file
has grown to this many times its size at the last look (at open, or after an earlier save),
and by at least ``COMPACT_GROWTH_BYTES_MIN`` (see ``grown_enough``)."""
COMPACT_GROWTH_BYTES_MIN = 1 << 20
"""The least growth of the snapshot file since the last look before a save looks again: as
many bytes as the least a compaction drops, so a small file is not looked over every save."""


def retained(versions: Sequence[int]) -> list[int]:
    """The indexes of ``versions`` (a stream's snapshot versions, non-decreasing, equal versions
    in the order they were saved) that a compaction keeps, in increasing order.

    Of equal versions only the last saved can be kept: it is the one a load answers.
    """
    if not versions:
        return []
    newest = versions[-1]
    oldest = versions[0]
    kept = {len(versions) - 1, bisect.bisect_right(versions, oldest) - 1}
    step = 1
    while True:
        boundary = (newest // step) * step - step
        if boundary < oldest:
            break
        kept.add(bisect.bisect_right(versions, boundary) - 1)
        step *= 2
    return sorted(kept)


def grown_enough(file_bytes: int, looked_at_bytes: int) -> bool:
    """Whether a snapshot file of ``file_bytes``, which held ``looked_at_bytes`` when its
    snapshots were last looked over, has grown enough to look again (``worth_compacting``).

    Two comparisons per save, so that the retention of every stream is computed once per
    doubling of the file, not after every save. A look either compacts or finds the file at
    most twice what a compaction would keep (``worth_compacting``), and the file at most
    doubles until the next look: it stays within about four times what a compaction keeps,
    or a few MiB.
    """
    grown = file_bytes - looked_at_bytes
    return file_bytes >= COMPACT_GROWTH_FACTOR * looked_at_bytes and (
        grown >= COMPACT_GROWTH_BYTES_MIN
    )


def worth_compacting(dead_bytes: int, file_bytes: int) -> bool:
    """Whether a compaction that may skip (at open, after a save) compacts a snapshot file of
    ``file_bytes`` that would lose ``dead_bytes``: at least ``COMPACT_DEAD_BYTES_MIN`` of
    them, and at least half the file.

    Half the file bounds the work: each compaction writes at most as many bytes as it drops,
    so compacting costs at most one more write of every snapshot ever saved.
    """
    return dead_bytes >= COMPACT_DEAD_BYTES_MIN and 2 * dead_bytes >= file_bytes
