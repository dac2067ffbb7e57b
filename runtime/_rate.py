"""The recent rate of commands (``statistics().commands_per_s_recent``): samples of the count
of commands answered, the task that takes them while commands run, and the rate read from them.

Nothing is done per command for it: the count is ``Counters.commands``, which the path of a
command adds to anyway. One task samples it a few times per window while commands run, and
sleeps while none is in flight and none was answered since its last sample: the runtime is idle
then, and the first command to take a mailbox slot wakes it (``WakingSet``). An idle runtime
thus has no timer of its own, which a clock that jumps to the next deadline (trio's
``MockClock``) relies on, and which costs nothing while idle.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._actor import Actor, logger
from ._repeats import IN_THE_NEXT_MINUTE, since_last

if TYPE_CHECKING:
    from ._engine import Engine

RATE_WINDOW_S = 1.0
"""The span of ``commands_per_s_recent``: the commands answered in the last second."""
SAMPLE_INTERVAL_S = RATE_WINDOW_S / 4
"""How often the sampler samples while commands run, by the event loop's clock."""
_SAMPLE_SPACING_S = SAMPLE_INTERVAL_S / 2
_SAMPLES_KEPT = 12


class RecentRate:
    """The commands answered per second over the last ``RATE_WINDOW_S``, from samples.

    A sample is the runtime's clock's reading and the count of commands answered then. The
    rate is the count now less the count at the start of the window, which is read between
    the two samples around that moment as if it grew evenly between them. It is exact when
    no command was answered between those two samples (after a pause, and always once the
    runtime is idle: samples are taken as it falls idle and as it wakes), and otherwise off by
    at most the commands answered between them, a quarter of a window apart while commands
    run.

    Invariant: the samples are in the order of the clock and at least ``_SAMPLE_SPACING_S``
    apart, so at most eight fall within a window and the twelve kept reach back past its
    start (or to the first sample, when there are fewer).
    """

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=_SAMPLES_KEPT)

    def note(self, now: float, commands: int) -> None:
        """Keep ``(now, commands)`` as a sample, unless the last one is more recent than
        ``_SAMPLE_SPACING_S`` (then it says about as much); one taken at the same reading of
        the clock (a manual one) is replaced, the count having grown since. In the event
        loop only."""
        samples = self._samples
        if not samples or now - samples[-1][0] >= _SAMPLE_SPACING_S:
            samples.append((now, commands))
        elif now == samples[-1][0]:
            samples[-1] = (now, commands)

    def per_s(self, started_at: float | None, now: float, commands: int) -> float:
        """The rate at ``now``, when the count is ``commands``; 0.0 unless running
        (``started_at`` None). Before the runtime has run a whole window, the average since
        it started (as ``commands_per_s``). It reads the samples in one C call, so it may be
        called from another thread while the event loop takes them."""
        if started_at is None:
            return 0.0
        start = now - RATE_WINDOW_S
        if start <= started_at:
            return commands / (now - started_at) if now > started_at else 0.0
        before, after = (started_at, 0), (now, commands)
        for sample in tuple(self._samples):
            if sample[0] > start:
                after = sample
                break
            before = sample
        (before_s, before_count), (after_s, after_count) = before, after
        at_start = before_count + (after_count - before_count) * (start - before_s) / (
            after_s - before_s
        )
        # Not below 0: read from another thread, a sample may be newer than ``commands``.
        return max(commands - at_start, 0.0) / RATE_WINDOW_S


class WakingSet(set[Actor]):
    """The engine's busy actors while the sampler sleeps: the first actor to join wakes it.

    Every command takes a mailbox slot before it can be answered, and an actor that takes its
    first slot joins the busy actors (``Engine._busy``): so, while the runtime is idle, that
    is where activity starts. The sampler puts this set in place of the engine's (empty) one
    as it falls asleep, and a plain set back once woken: only ``add`` differs, and only for
    that while, so the path of a command pays nothing for the sampler.
    """

    __slots__ = ("_wake",)

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake: Callable[[], None] | None = wake

    def add(self, actor: Actor) -> None:
        super().add(actor)
        wake, self._wake = self._wake, None
        if wake is not None:
            wake()


async def sample_commands(engine: Engine) -> None:
    """Sample the count of commands answered while commands run; sleep while the runtime is
    idle. One task in the runtime's task group, from its start to its exit.

    Paced by the event loop's clock, not the runtime's: a test's manual clock must not see
    the sampler's sleeps (nor, with ``autojump``, be moved by them). The samples carry the
    runtime's clock's readings, as ``uptime_s`` does.
    """
    counters = engine._counters
    seen = counters.commands
    try:
        while True:
            await anyio.sleep(SAMPLE_INTERVAL_S)
            commands = counters.commands
            _sample(engine)
            if commands == seen and not engine._in_flight:
                # Idle: with no slot taken, every command answered has been counted (one is
                # counted as it frees its slot, with no yield between), and none can be
                # answered before an actor takes a slot and so joins the busy actors, which
                # wakes this task with a sample of the count: it stayed the same until then.
                woken = anyio.Event()
                engine._busy = WakingSet(functools.partial(_wake, engine, woken))
                await woken.wait()
                engine._busy = set(engine._busy)
                commands = counters.commands
            seen = commands
    finally:
        if isinstance(engine._busy, WakingSet):
            engine._busy = set(engine._busy)


def _wake(engine: Engine, woken: anyio.Event) -> None:
    """Wake the sampler as the runtime wakes, with a sample of the count of commands, which
    has stayed the same since the sampler fell asleep. Called by the command that takes the
    first slot, as its actor joins the busy actors: it must not fail that command."""
    woken.set()
    _sample(engine)


def _sample(engine: Engine) -> None:
    """Keep a sample of the count of commands answered now, by the runtime's clock.

    A clock that fails (one of the application's or a test's) loses the sample, not the
    command that woke the sampler nor the runtime's tasks: the figure is read from the
    samples kept, and ``statistics()``, which reads the clock too, raises its error to its
    caller. The failure is logged, with its traceback once a minute (``_repeats``).
    """
    try:
        now = engine._clock.now()
    except Exception as error:
        since = engine._repeats.due("sampling the rate of commands", error)
        if since is None:
            logger.debug("the runtime's clock failed: %s: %.300s", type(error).__name__, error)
        else:
            logger.warning(
                "the runtime's clock failed, so commands_per_s_recent misses a sample and is "
                "read from those before it; fix the clock passed as Runtime(clock=...). Later "
                "failures of the clock %s are logged at debug level, without a traceback%s",
                IN_THE_NEXT_MINUTE,
                since_last(since),
                exc_info=error,
            )
        return
    engine._rate.note(now, engine._counters.commands)
