"""Consecutive measured windows over callers that run without pause (pure bookkeeping).

N callers are released together and each repeats its operation. The first window opens at
the completion that ends the ramp, when every caller has completed one operation (so the herd
of first calls, slow at 10,000 callers, is never measured). Windows then follow one another
without a gap, each ``max(duration, ramp)`` long, so that even slow configurations span whole
batches. Each completion belongs to the window its completion time falls in; a window's rate
is its completions divided by the time from the previous window's last completion to its own
last completion, so that a rate never depends on how batch completions fall against the
edges. A window in which nothing completed is merged into the next; the last one stays open
until something completes in it. Nothing is extrapolated.

Callers share one ``Windows`` from one event loop, or under a lock from threads.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._stats import rate_per_s


@dataclass(frozen=True, slots=True)
class Round:
    """One window: its length and the latency of each operation completed in it.

    ``loop_cpu_ns_per_op``: the event loop thread's CPU time in the window per operation
    completed in it (when the windows were given a ``cpu_clock``).
    """

    elapsed_ns: int
    latencies_ns: Sequence[int]
    events_per_fsync: float | None = None
    loop_cpu_ns_per_op: float | None = None

    @property
    def operations(self) -> int:
        return len(self.latencies_ns)

    @property
    def rate_per_s(self) -> float:
        return rate_per_s(self.operations, self.elapsed_ns)


@dataclass(slots=True)
class Windows:
    """The windows of one run of callers. ``probe`` samples counters at each window's start,
    and so does ``cpu_clock`` (a thread's CPU time in ns: for callers on one event loop, the
    loop's, since samples are taken by the callers).

    Invariant: ``opened_ns``, ``length_ns`` and ``closes_ns`` are infinite until the ramp has
    ended; completions are recorded in completion order, as ``done_ns[i]`` and
    ``latency_ns[i]``. Arrays of ints rather than a tuple per completion: recording costs the
    measured callers no allocation, and nothing for the cyclic garbage collector to walk.
    """

    callers: int
    count: int
    duration_ns: int
    probe: Callable[[], Any] | None = None
    cpu_clock: Callable[[], int] | None = None
    released_ns: int = 0
    started: int = 0
    opened_ns: float = math.inf
    length_ns: float = math.inf
    closes_ns: float = math.inf
    next_edge_ns: float = math.inf
    """The end of the window that completions currently fall in (kept for the fast path)."""
    done_ns: array[int] = field(default_factory=lambda: array("q"))
    latency_ns: array[int] = field(default_factory=lambda: array("q"))
    probes: list[Any] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)

    def completed(self, began: int, done: int, first: bool) -> None:
        """Record one completed operation (``first``: the caller's first one)."""
        # Fast path, taken by almost every completion: inside the current window.
        if self.opened_ns < done <= self.next_edge_ns and not first:
            self.done_ns.append(done)
            self.latency_ns.append(done - began)
            return
        if first:
            self.started += 1
            if self.started == self.callers:
                self.opened_ns = done
                self.length_ns = max(self.duration_ns, done - self.released_ns, 1)
                self.closes_ns = done + self.count * self.length_ns
                self.next_edge_ns = done + self.length_ns
                self._sample()
            return
        if done <= self.opened_ns:
            return
        if done > self.closes_ns:
            last_start = self.opened_ns + (self.count - 1) * self.length_ns
            if self.done_ns and self.done_ns[-1] > last_start:
                return
            self.closes_ns = done  # the last window would close empty: it waits for this one
        self.done_ns.append(done)
        self.latency_ns.append(done - began)
        index = min(int((done - self.opened_ns) // self.length_ns), self.count - 1)
        self.next_edge_ns = min(self.opened_ns + (index + 1) * self.length_ns, self.closes_ns)
        if index == self.count - 1:
            self.next_edge_ns = self.closes_ns
        while len(self.probes) <= index:
            self._sample()

    def _sample(self) -> None:
        self.probes.append(self.probe() if self.probe is not None else None)
        if self.cpu_clock is not None:
            self.cpu_ns.append(self.cpu_clock())

    def closed(self) -> None:
        """Sample the counters at the last window's end, once: the first caller that finds
        the windows closed calls it. Operations still in flight then complete outside every
        window, and neither their counters nor their CPU are charged to the last one."""
        while len(self.probes) <= self.count:
            self._sample()

    def finish(self) -> None:
        """After the callers stopped: the end's sample, if no caller took it (``closed``)."""
        self.closed()

    def rounds(self, batching: Callable[[Any, Any], float | None] | None = None) -> list[Round]:
        """One ``Round`` per window, empty windows merged into the next."""
        if not math.isfinite(self.opened_ns) or not self.done_ns:
            raise RuntimeError("the callers stopped before every caller completed an operation")
        # Threads record under a lock after reading the clock: nearly sorted, not quite.
        completions = sorted(zip(self.done_ns, self.latency_ns, strict=True))
        edges = [self.opened_ns + k * self.length_ns for k in range(1, self.count)]
        edges.append(max(self.closes_ns, completions[-1][0]))
        rounds: list[Round] = []
        previous_last: float = self.opened_ns
        start_probe = 0
        latencies: list[int] = []
        last: float = previous_last
        position = 0
        for window, edge in enumerate(edges):
            while position < len(completions) and completions[position][0] <= edge:
                last, latency = completions[position]
                latencies.append(latency)
                position += 1
            if not latencies:
                continue  # merged into the next window
            per_fsync = cpu_per_op = None
            if batching is not None and window + 1 < len(self.probes):
                per_fsync = batching(self.probes[start_probe], self.probes[window + 1])
            if window + 1 < len(self.cpu_ns):
                cpu_ns = self.cpu_ns[window + 1] - self.cpu_ns[start_probe]
                cpu_per_op = cpu_ns / len(latencies)
            rounds.append(Round(int(last - previous_last), latencies, per_fsync, cpu_per_op))
            previous_last, latencies, start_probe = last, [], window + 1
        return rounds
