"""The supervisor: its decisions as pure functions (restart after a delay, or stop the
entity), the pruning of its table of crashes, and its part of the engine (``Supervisor``)."""

from __future__ import annotations

import inspect
import math
import sys
import traceback
from collections import deque
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

import anyio

from ._actor import logger
from ._clock import Clock
from ._exceptions import EntityStopped, RuntimeClosed
from ._repeats import IN_THE_NEXT_MINUTE, Repeats, since_last
from ._statistics import Counters
from ._types import LifecycleEvent, LifecycleKind


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How the supervisor treats an entity whose user code crashes.

    At most ``max_restarts`` restarts within any ``period_s``; the crash after that stops the
    entity: commands fail fast with ``EntityStopped`` until ``runtime.reset(...)`` or, when
    ``cooldown_s`` is set, until the cool-down has passed. Restart number n (within the period)
    waits ``min(backoff_initial_s * backoff_multiplier ** (n - 1), backoff_max_s)``.

    An entity's crashes are remembered while it is stopped (until its cool-down, if any,
    ends), while its backoff lasts and while a crash is less than ``period_s`` old; an
    activation meanwhile is a restart, one after that a fresh start (``Supervised.expired``).

    Checked when it is made: ``max_restarts`` is a whole number of at least 0, the durations
    ints or floats of at least 0 (``period_s`` above 0), ``backoff_multiplier`` at least 1;
    anything else (NaN, a bool, a string, a ``timedelta``) raises a ValueError naming it.
    """

    max_restarts: int = 5
    period_s: float = 60.0
    backoff_initial_s: float = 0.01
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 5.0
    cooldown_s: float | None = None

    def __post_init__(self) -> None:
        restarts = self.max_restarts
        if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
            raise ValueError(f"max_restarts must be a whole number >= 0, not {restarts!r}")
        _check_number("period_s", self.period_s, "> 0", 0, above=True)
        _check_number("backoff_initial_s", self.backoff_initial_s, ">= 0", 0)
        _check_number("backoff_max_s", self.backoff_max_s, ">= 0", 0)
        _check_number("backoff_multiplier", self.backoff_multiplier, ">= 1", 1)
        if self.cooldown_s is not None:
            _check_number("cooldown_s", self.cooldown_s, ">= 0 or None", 0)


def check_policy(policy: object) -> None:
    """TypeError unless ``policy`` is a RestartPolicy: anything else would fail only at the
    first crash, far from the mistake."""
    if not isinstance(policy, RestartPolicy):
        raise TypeError(
            f"restart_policy must be a RestartPolicy or None, not {policy!r:.100}: "
            f"Runtime(journal, restart_policy=RestartPolicy(max_restarts=5, period_s=60))"
        )


def _check_number(
    name: str, value: object, rule: str, bound: float, *, above: bool = False
) -> None:
    """ValueError unless ``value`` is an int or a float (not a bool) ``>= bound`` (``> bound``
    when ``above``).

    Written as "not (value >= bound)" so that NaN, which compares false with everything, is
    refused rather than let through to the backoff arithmetic; a string, None or a timedelta
    is refused by its type, not left to fail as a TypeError in a comparison.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value > bound if above else value >= bound)
    ):
        raise ValueError(f"{name} must be a number {rule}, not {value!r}")


@dataclass(frozen=True, slots=True)
class CrashDecision:
    """What to do after a crash: restart no earlier than ``restart_at``, or stop.

    ``crash_times`` are the crashes still inside the policy's period (this one included).
    When ``stop`` is true, ``stopped_until`` is when the cool-down ends (``math.inf``: until a
    reset).
    """

    crash_times: tuple[float, ...]
    stop: bool
    restart_at: float
    stopped_until: float


def decide_after_crash(
    policy: RestartPolicy, earlier_crashes: Sequence[float], now: float
) -> CrashDecision:
    """Decide, at ``now``, what follows a crash, given the times of earlier crashes."""
    recent = (*(t for t in earlier_crashes if now - t < policy.period_s), now)
    stop, restart_at, stopped_until = verdict(policy, len(recent), now)
    return CrashDecision(recent, stop, restart_at, stopped_until)


def verdict(policy: RestartPolicy, crashes: int, now: float) -> tuple[bool, float, float]:
    """``(stop, restart_at, stopped_until)`` after a crash at ``now`` that makes ``crashes``
    crashes within the period (``CrashDecision`` says what each means)."""
    if crashes > policy.max_restarts:
        until = math.inf if policy.cooldown_s is None else now + policy.cooldown_s
        return True, until, until
    return False, now + backoff_delay(policy, crashes), now


def backoff_delay(policy: RestartPolicy, restart: int) -> float:
    """The wait before restart number ``restart`` within the period (1 for the first).

    ``min(backoff_initial_s * backoff_multiplier ** (restart - 1), backoff_max_s)``, without
    overflowing: an entity that restarts thousands of times in a period (a policy that never
    stops it) takes its power of the multiplier beyond any float long before it is stopped.
    """
    initial, cap = policy.backoff_initial_s, policy.backoff_max_s
    if initial == 0 or initial >= cap:
        return min(initial, cap)
    exponent = restart - 1
    multiplier = float(policy.backoff_multiplier)
    try:
        delay = initial * multiplier**exponent
    except OverflowError:
        # The power is beyond a float; the delay is too unless the initial delay is tiny.
        try:
            delay = math.exp(math.log(initial) + exponent * math.log(multiplier))
        except OverflowError:
            delay = math.inf
    return min(delay, cap)


@dataclass(slots=True)
class Supervised:
    """What the supervisor remembers of an entity that crashed (only such entities have one).

    ``crash_times``: its latest crashes, oldest first, at most the ``max_restarts + 1`` that
    can decide anything (a deque with that ``maxlen``): kept in place rather than copied per
    crash, so that an entity whose policy lets it crash thousands of times in a period costs
    the same per crash as any other.
    """

    crash_times: deque[float]
    restart_at: float
    stopped: bool
    stopped_until: float
    last_failure: BaseException  # A copy that holds no frames (``detached``).
    restart_pending: bool = True
    sleepers: set[anyio.CancelScope] | None = None  # of callers sleeping out the backoff
    version: int = 0  # the entity's version at its last crash (told by a reset notice)

    def is_stopped(self, now: float) -> bool:
        """Whether commands fail fast now (stopped, and the cool-down, if any, not over)."""
        return self.stopped and now < self.stopped_until

    def expired(self, period_s: float, now: float) -> bool:
        """Whether the supervisor has no more use for this record: the entity is not stopped
        (or its cool-down is over), its restart backoff is over (it may be longer than the
        period) and its crashes are all older than ``period_s``. The entity then starts
        afresh: its next activation is not a restart, and its next crash the first."""
        crashes = self.crash_times
        return (
            not self.is_stopped(now)
            and now >= self.restart_at
            and (not crashes or now - crashes[-1] >= period_s)
        )

    def record(self, policy: RestartPolicy, now: float, failure: BaseException) -> bool:
        """Apply the policy to a crash at ``now``; answer whether it stops the entity.

        The clock is monotonic, so the crashes older than the period are the oldest ones.
        """
        crashes = self.crash_times
        period = policy.period_s
        while crashes and now - crashes[0] >= period:
            crashes.popleft()
        crashes.append(now)
        self.stopped, self.restart_at, self.stopped_until = verdict(policy, len(crashes), now)
        self.last_failure = failure
        self.restart_pending = True
        return self.stopped


def detached(failure: BaseException) -> BaseException:
    """A copy of ``failure`` that keeps no frame alive, for the supervisor's table.

    The table keeps an entity's last failure while the entity is stopped, possibly for good.
    The failure's traceback holds every frame it went through, and each frame its locals: the
    state and the command in ``decide``, what it built, and the frames of the caller up the
    stack. The copy is of the same class, with the same ``args`` and attributes (the members
    of a group copied alike), and no traceback, cause or context; a note holds the original's
    formatted traceback (its causes and notes included). The caller's exception is left as
    it is. A class whose ``__new__`` refuses its own ``args`` is kept as it is, frames and all.
    """
    copy = _frameless(failure)
    if copy is not failure:
        text = "".join(traceback.format_exception(failure)).rstrip("\n")
        copy.add_note(f"The traceback of this failure (its frames are not kept):\n{text}")
    return copy


def _frameless(failure: BaseException) -> BaseException:
    """``failure`` made again from its ``args`` and attributes, without notes (``detached``)."""
    cls = type(failure)
    args = failure.args
    if isinstance(failure, BaseExceptionGroup):
        members = [_frameless(member) for member in failure.exceptions]
        if any(copy is member for copy, member in zip(members, failure.exceptions, strict=True)):
            return failure
        args = (failure.message, members)
    try:
        copy = cls.__new__(cls, *args)
    except Exception:
        return failure
    attributes = dict(failure.__dict__)
    attributes.pop("__notes__", None)  # They end the formatted traceback, in the note.
    copy.__dict__.update(attributes)
    return copy


SUPERVISED_PRUNE_MIN = 1024
"""The crash table is pruned once it holds this many entities (and twice its last size)."""


def forget_old_crashes(
    supervised: MutableMapping[str, Supervised], period_s: float, now: float
) -> int:
    """Drop the entities whose records have expired (``Supervised.expired``); answer the
    table's size at which to prune it next.

    Called when the table has doubled since the last pass (and by the sweeper), so it holds
    about the entities that crashed recently, at amortised constant cost. Whether a record
    was dropped or not changes nothing but memory: an expired one is dropped when its
    entity is next activated (``Supervisor._wait_for_restart``).
    """
    forgotten = [
        stream_id for stream_id, entity in supervised.items() if entity.expired(period_s, now)
    ]
    for stream_id in forgotten:
        del supervised[stream_id]
    return max(SUPERVISED_PRUNE_MIN, 2 * len(supervised))


class Supervisor:
    """The engine's supervisor: its table of crashed entities and the lifecycle notices.

    A part of ``Engine``, which sets these attributes; kept here, next to the decisions it
    applies, so that the engine's module holds the path of a command.
    """

    _policy: RestartPolicy
    _clock: Clock
    _counters: Counters
    _on_lifecycle: Callable[[LifecycleEvent], None] | None
    _supervised: dict[str, Supervised]
    _supervised_prune_at: int
    # Invariant: ``_stopped`` holds every entity stopped now (``Supervised.is_stopped``), and
    # maybe some whose cool-down has ended since; those are found through ``_cooldowns``, the
    # ends of the cool-downs in the order of the stops, which is their order in time (one
    # policy, a monotonic clock). So the entities stopped now are counted without a walk.
    _stopped: dict[str, Supervised]
    _cooldowns: deque[tuple[float, str, Supervised]]
    _repeats: Repeats
    _accepting: bool
    _refusal: str
    _waiting_for_restart: int  # Callers sleeping out a backoff; the outbox counts its own.

    @staticmethod
    def _checked_observer(
        observer: Callable[[LifecycleEvent], None] | None,
    ) -> Callable[[LifecycleEvent], None] | None:
        """``observer`` if it is None or a plain callable; TypeError otherwise.

        An async function is refused: the runtime calls the observer synchronously, so its
        coroutine would never run and every notice would be lost without a word.
        """
        if observer is None:
            return None
        if not callable(observer):
            raise TypeError(
                f"on_lifecycle must be a function that takes a LifecycleEvent, or None, "
                f"not {type(observer).__name__}"
            )
        # An object whose __call__ is async counts as an async function too.
        call = type(observer).__call__
        if inspect.iscoroutinefunction(observer) or inspect.iscoroutinefunction(call):
            raise TypeError(
                f"on_lifecycle must be a plain function, not the async {observer!r}: it is "
                f"called synchronously, so its coroutine would never run. Pass a function that "
                f"hands the LifecycleEvent on (to a memory object stream's send_nowait, say)"
            )
        return observer

    async def _wait_for_restart(self, stream_id: str, queued: bool = False) -> bool:
        """Fail fast for a stopped entity; sleep out a restart backoff (then answer True).
        ``queued``: a command of the outbox (counted there, not as a caller waiting).

        Called before every activation of an entity in the table. An expired record is
        dropped here as a pass of ``forget_old_crashes`` would drop it, so that whether the
        table was pruned meanwhile (the sweeper prunes it, without one only its size does)
        never changes what the activation is: a restart while the record lasts, a fresh
        start after.
        """
        supervised = self._supervised.get(stream_id)
        if supervised is None:
            return False
        now = self._clock.now()
        if supervised.expired(self._policy.period_s, now):
            del self._supervised[stream_id]
            return False
        if supervised.stopped:
            if now < supervised.stopped_until:
                until = supervised.stopped_until
                if until == math.inf:
                    raise EntityStopped(stream_id, supervised.last_failure, None)
                raise EntityStopped(stream_id, supervised.last_failure, until, until - now)
            supervised.stopped = False  # the cool-down is over: start afresh
            supervised.crash_times.clear()
            self._stopped.pop(stream_id, None)
            return False
        if now < supervised.restart_at:
            if not self._accepting:
                # Shutting down (a command tell_nowait accepted, delivered now): refused at
                # once, as the callers that were sleeping out the backoff are, rather than
                # holding the exit until the backoff ends.
                raise RuntimeClosed(self._refusal)
            # In a scope that a reset or the shutdown cancels (``_end_backoff``): the caller
            # then goes on at once, to a fresh activation or to RuntimeClosed.
            sleepers = supervised.sleepers
            if sleepers is None:
                sleepers = supervised.sleepers = set()
            counted = not queued
            with anyio.CancelScope() as scope:
                sleepers.add(scope)
                self._waiting_for_restart += counted
                try:
                    await self._clock.sleep(supervised.restart_at - now)
                finally:
                    sleepers.discard(scope)
                    self._waiting_for_restart -= counted
            return True
        return False

    def _end_backoff(self, supervised: Supervised) -> None:
        """Wake the callers sleeping out a restart backoff: the entity was reset (its record
        is gone) or the runtime is closing (``_admit`` then raises RuntimeClosed)."""
        if supervised.sleepers:
            for scope in supervised.sleepers:
                scope.cancel()

    def _activation_crashed(
        self, stream_id: str, aggregate: str, reached: list[int], error: Exception
    ) -> None:
        """Supervise a crash while activating: user code failed to fold a stored event
        (``reached``: the version before it, when known). Logged, unlike a crash in
        ``decide``: every caller of the entity fails with it until that code is fixed."""
        version = reached[0] if reached else 0
        where = f" on its event {version + 1}" if reached else ""
        since = self._repeats.due(f"activating {aggregate}", error)
        if since is not None:
            logger.error(
                "activating %r failed%s; its callers get this error, and the supervisor "
                "restarts the entity by its policy. Later activations of %r that fail with %s "
                "%s are logged at debug level, without a traceback (statistics().crashes "
                "counts them)%s",
                stream_id,
                where,
                aggregate,
                type(error).__name__,
                IN_THE_NEXT_MINUTE,
                since_last(since),
                exc_info=error,
            )
        else:
            logger.debug(
                "activating %r failed%s: %s: %.300s",
                stream_id,
                where,
                type(error).__name__,
                error,
            )
        # Its kind's traceback is logged (now or before): stopping the entity does not repeat it.
        self._supervise(stream_id, aggregate, version, error, logged=True)

    def _supervise(
        self,
        stream_id: str,
        aggregate: str,
        version: int,
        error: Exception,
        *,
        logged: bool = False,
    ) -> None:
        """Record a crash and apply the policy; never raises an Exception of its own (the
        crash's caller gets the crash, and the actor must be broken and its slot freed)."""
        try:
            self._record_crash(stream_id, aggregate, version, error, logged)
        except Exception:
            logger.exception(
                "the supervisor failed on a crash of %r; it restarts without a backoff", stream_id
            )

    def _record_crash(
        self, stream_id: str, aggregate: str, version: int, error: Exception, logged: bool
    ) -> None:
        """Count a crash, apply the policy, notify; ``logged``: a traceback of the crash's kind
        was logged (an activation's), so that stopping the entity does not repeat it."""
        self._counters.crashes += 1
        now = self._clock.now()
        failure = detached(error)
        supervised = self._supervised.get(stream_id)
        if supervised is None:
            if len(self._supervised) >= self._supervised_prune_at:
                self._forget_old_crashes(now)
            # At most sys.maxsize: a deque holds no more, and a policy that never stops an
            # entity (max_restarts=sys.maxsize, say) must not make every crash fail here.
            kept = min(self._policy.max_restarts + 1, sys.maxsize)
            crashes: deque[float] = deque(maxlen=kept)
            supervised = Supervised(crashes, 0.0, False, 0.0, failure)
            self._supervised[stream_id] = supervised
        stop = supervised.record(self._policy, now, failure)
        supervised.version = version
        if stop:  # Counted before the notices: their observer may read statistics().
            self._stopped[stream_id] = supervised
            if supervised.stopped_until != math.inf:
                self._stopped_now(now)  # Ended cool-downs go first: the deque stays bounded.
                self._cooldowns.append((supervised.stopped_until, stream_id, supervised))
        self._notify("crashed", aggregate, stream_id, version, error)
        # Not when the observer of the crash reset the entity: it is not stopped any more.
        if stop and self._supervised.get(stream_id) is supervised:
            self._log_stopped(stream_id, aggregate, supervised, error, logged)
            self._notify("stopped", aggregate, stream_id, version, error)

    def _log_stopped(
        self,
        stream_id: str,
        aggregate: str,
        supervised: Supervised,
        error: Exception,
        logged: bool,
    ) -> None:
        """Log that the supervisor stopped an entity: until it is released, every command to
        it fails fast. With the crash's traceback the first time for its aggregate and class
        of exception (a crash of an asked command is not logged otherwise), unless one of its
        kind was logged already (``logged``)."""
        since = self._repeats.due(f"stopping {aggregate}", error)
        if since is None:
            logger.debug(
                "%r stopped after a crash: %s: %.300s", stream_id, type(error).__name__, error
            )
            return
        cooldown = self._policy.cooldown_s
        logger.error(
            "%r stopped: it crashed %d times within period_s=%s s, more than "
            "RestartPolicy(max_restarts=%d) allows; commands to it fail fast with "
            "EntityStopped until runtime.reset(...) is called%s. Fix the cause (the last "
            "crash's traceback is attached, or logged before). Later entities of %r "
            "stopped after a crash with %s %s are logged at debug level, without a traceback "
            "(statistics().stopped_entities counts those stopped now, "
            "entity_stopped_refusals the commands refused)%s",
            stream_id,
            len(supervised.crash_times),
            self._policy.period_s,
            self._policy.max_restarts,
            "" if cooldown is None else f" or its cool-down of {cooldown} s ends",
            aggregate,
            type(error).__name__,
            IN_THE_NEXT_MINUTE,
            since_last(since),
            # The supervisor's copy, with the traceback as text: a handler that keeps records
            # must not keep the crash's frames (its state, its command) alive.
            exc_info=None if logged else supervised.last_failure,
        )

    def _forget_old_crashes(self, now: float) -> None:
        period = self._policy.period_s
        self._supervised_prune_at = forget_old_crashes(self._supervised, period, now)
        self._stopped_now(now)  # Also drops what it keeps of the cool-downs over.

    def _stopped_now(self, now: float, *, prune: bool = True) -> int:
        """How many entities are stopped now, once the cool-downs over by ``now`` have been
        dropped (at amortised constant cost: each stop is dropped once).

        ``prune=False`` (a read from a thread other than the event loop's, which keeps the
        record): the same count, changing nothing, from a copy of the cool-downs.
        """
        cooldowns, stopped = self._cooldowns, self._stopped
        if not prune:
            ended: set[str] = set()
            for until, stream_id, supervised in tuple(cooldowns):  # Copied in one C call.
                if until > now:
                    break
                if stopped.get(stream_id) is supervised and not supervised.is_stopped(now):
                    ended.add(stream_id)
            return len(stopped) - len(ended)
        while cooldowns and cooldowns[0][0] <= now:
            _, stream_id, supervised = cooldowns.popleft()
            # Not if the entity has been stopped again since (with a later cool-down).
            if stopped.get(stream_id) is supervised and not supervised.is_stopped(now):
                del stopped[stream_id]
        return len(stopped)

    def _notify(
        self,
        kind: LifecycleKind,
        aggregate: str,
        stream_id: str,
        version: int,
        error: BaseException | None = None,
    ) -> None:
        observer = self._on_lifecycle
        if observer is None:
            return
        try:
            observer(LifecycleEvent(kind, aggregate, stream_id, version, error))
        except Exception as failure:
            if error is not None and failure.__context__ is error:
                # Raised while the engine handled the crash: Python chained the crash onto
                # the observer's failure, but the crash is its caller's to report.
                failure.__suppress_context__ = True
            since = self._repeats.due(f"on_lifecycle {kind}", failure)
            if since is None:
                logger.debug(
                    "on_lifecycle observer failed on %r for %r: %s: %.300s",
                    kind,
                    stream_id,
                    type(failure).__name__,
                    failure,
                )
                return
            logger.error(
                "on_lifecycle observer failed on %r for %r; the runtime goes on. Later "
                "notices %r on which it fails with %s %s are logged at debug level, without a "
                "traceback%s",
                kind,
                stream_id,
                kind,
                type(failure).__name__,
                IN_THE_NEXT_MINUTE,
                since_last(since),
                exc_info=failure,
            )
