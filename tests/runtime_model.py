"""The model the Runtime's state machine (test_stateful_runtime) checks the runtime against.

Two small aggregates share one ``decide`` and ``evolve``: a tally that rejects a total below
zero, that crashes in ``decide`` or ``evolve`` when told to, and that decides an event the
journal refuses when told to; ``snapper`` is the same with ``snapshot_every=2``. The model
holds each stream's events, the supervisor's memory of crashes (as docs/runtime.md describes
it), the live actors in least-recently-used order, the idle sweeper's ticks and the counters
that ``Runtime.statistics()`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import strategies as st

from runtime import Aggregate, CommandRejected, EntityStopped, LifecycleEvent, MailboxTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class Tally:
    total: int = 0
    count: int = 0


@dataclass(frozen=True)
class Add:
    amount: int


@dataclass(frozen=True)
class AddTwice:
    amount: int


@dataclass(frozen=True)
class Nothing:
    pass


@dataclass(frozen=True)
class Crash:
    where: str  # "decide" or "evolve"


@dataclass(frozen=True)
class Refuse:
    """Decides an event the journal refuses up front (a NaN)."""


Command = Add | AddTwice | Nothing | Crash | Refuse


@dataclass(frozen=True)
class Added:
    amount: int


@dataclass(frozen=True)
class Broke:
    pass


@dataclass(frozen=True)
class Odd:
    value: float


Event = Added | Broke | Odd


class Boom(Exception):
    pass


# Every command decide sees, in order: the concurrent rule reads the order of decisions here.
DECIDED: list[Any] = []


def decide(state: Tally, command: Command) -> list[Event]:
    DECIDED.append(command)
    match command:
        case Add(amount) | AddTwice(amount):
            times = 2 if isinstance(command, AddTwice) else 1
            if state.total + times * amount < 0:
                raise CommandRejected("the total would go below zero")
            return [Added(amount)] * times
        case Nothing():
            return []
        case Crash("decide"):
            raise Boom("decide crashed")
        case Crash():
            return [Broke()]
        case Refuse():
            return [Odd(math.nan)]
    raise TypeError(command)


def evolve(state: Tally, event: Event) -> Tally:
    match event:
        case Added(amount):
            return Tally(state.total + amount, state.count + 1)
        case Broke():
            raise Boom("evolve crashed")
        case Odd():
            return state
    raise TypeError(event)


EVENTS: dict[str, type[Any]] = {"Added": Added, "Broke": Broke, "Odd": Odd}
counter = Aggregate("counter", Tally(), decide, evolve, events=EVENTS)
snapper = Aggregate("snapper", Tally(), decide, evolve, events=EVENTS, snapshot_every=2)
AGGREGATES = {"counter": counter, "snapper": snapper}
ENTITIES = [
    ("counter", "a"),
    ("counter", "b"),
    ("counter", "c"),
    ("snapper", "a"),
    ("snapper", "b"),
]
entities = st.sampled_from(ENTITIES)

IDLE_S = 4  # The sweeper runs every second: passivate_after_s / 4.
MAX_RESTARTS, PERIOD_S = 2, 10.0


def backoff_s(initial_s: float, restart: int) -> float:
    """The policy's backoff: ``initial_s`` doubled per restart, at most twice ``initial_s``."""
    return float(min(initial_s * 2 ** (restart - 1), 2 * initial_s))


amounts = st.integers(-3, 3)
safe_commands = st.one_of(
    st.builds(Add, amounts), st.builds(AddTwice, amounts), st.just(Nothing()), st.just(Refuse())
)
commands = safe_commands | st.builds(Crash, st.sampled_from(["decide", "evolve"]))


@dataclass(frozen=True)
class Config:
    max_live_actors: int | None
    passivate: bool
    snapshot_on_passivation: bool
    cooldown_s: float | None
    backoff_s: float  # 0: a crashed entity restarts at once, even in concurrent asks
    mailbox_bound: int  # small: concurrent callers wait for room
    reset_on_crash: bool  # the lifecycle observer resets an entity on its crashed notice


configs = st.builds(
    Config,
    st.sampled_from([None, 1, 2, 3]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, 3.0]),
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([1, 2, 1024]),
    st.booleans(),
)


def fold(amounts: list[int]) -> Tally:
    return Tally(sum(amounts), len(amounts))


@dataclass
class Record:
    """What the supervisor remembers of an entity (docs/runtime.md, the supervisor)."""

    crash_times: list[float]
    restart_at: float = 0.0
    stopped: bool = False
    stopped_until: float = 0.0
    restart_pending: bool = True

    def expired(self, now: float) -> bool:
        return (
            not (self.stopped and now < self.stopped_until)
            and now >= self.restart_at
            and (not self.crash_times or now - self.crash_times[-1] >= PERIOD_S)
        )


@dataclass
class Live:
    tick: int
    snapshot_at: int


COUNTERS = [
    "commands",
    "rejections",
    "append_failures",
    "crashes",
    "restarts",
    "activations",
    "passivations",
    "snapshots",
    "outbox_undelivered",
    "mailbox_timeouts",
    "entity_stopped_refusals",
]


@dataclass
class Model:
    config: Config
    now: float
    events: dict[str, list[int]]
    snapshots: dict[str, int]  # The latest snapshot's version per stream.
    live: dict[str, Live] = field(default_factory=dict)  # least recently used first
    records: dict[str, Record] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    tick: int = 0
    next_sweep: float = 0.0

    def uses_snapshots(self, name: str) -> bool:
        return self.config.snapshot_on_passivation or AGGREGATES[name].snapshot_every is not None

    def admit(self, name: str, stream: str, *, evict: bool = True) -> str:
        """Admission of a call: "ok" (activating the actor if needed), "stopped" or "backoff".

        ``evict=False``: the actors an activation evicts are left to the caller, which learns
        them from the runtime's lifecycle notices."""
        if stream in self.live:
            self.live[stream] = self.live.pop(stream)
            self.live[stream].tick = self.tick
            return "ok"
        record = self.records.get(stream)
        if record is not None:
            if record.expired(self.now):
                del self.records[stream]
                record = None
            elif record.stopped:
                if self.now < record.stopped_until:
                    return "stopped"
                record.stopped = False
                record.crash_times.clear()
            elif self.now < record.restart_at:
                return "backoff"
        self.counts["activations"] += 1
        if record is not None and record.restart_pending:
            record.restart_pending = False
            self.counts["restarts"] += 1
        snapshot_at = self.snapshots.get(stream, 0) if self.uses_snapshots(name) else 0
        self.live[stream] = Live(self.tick, snapshot_at)
        bound = self.config.max_live_actors
        if evict and bound is not None and len(self.live) > bound:
            victims = [s for s in self.live if s != stream][: len(self.live) - bound]
            for victim in victims:
                self.passivate(victim)
        return "ok"

    def refused(self, outcome: tuple[Any, ...]) -> None:
        """Count the refusal of a call whose outcome its caller saw, if it was one."""
        if outcome == ("stopped",):
            self.counts["entity_stopped_refusals"] += 1
        elif outcome[0] in ("backoff", "timeout"):
            self.counts["mailbox_timeouts"] += 1

    def follow(self, notice: LifecycleEvent) -> None:
        """Apply a lifecycle notice to the model (where timing decides what the runtime
        does), checking that it can happen."""
        stream, version = notice.stream_id, notice.version
        assert version == len(self.events.get(stream, [])), notice
        if notice.kind == "passivated":
            assert stream in self.live, notice
            self.passivate(stream)
        elif notice.kind in ("started", "recovered", "restarted"):
            assert stream not in self.live, notice
            restarts = self.counts["restarts"]
            assert self.admit(notice.aggregate, stream, evict=False) == "ok", notice
            assert (self.counts["restarts"] > restarts) == (notice.kind == "restarted"), notice
            assert (notice.kind == "started") == (version == 0) or notice.kind == "restarted"

    def in_backoff(self, stream: str) -> bool:
        """Whether a call to the entity would wait out its restart backoff."""
        record = self.records.get(stream)
        return (
            stream not in self.live
            and record is not None
            and not record.expired(self.now)
            and not record.stopped
            and self.now < record.restart_at
        )

    def passivate(self, stream: str) -> None:
        actor = self.live.pop(stream)
        self.counts["passivations"] += 1
        version = len(self.events.get(stream, []))
        if self.config.snapshot_on_passivation and version > actor.snapshot_at:
            self.snapshot(stream, version)

    def snapshot(self, stream: str, version: int) -> None:
        self.counts["snapshots"] += 1
        self.snapshots[stream] = version

    def crash(self, stream: str) -> None:
        self.counts["crashes"] += 1
        del self.live[stream]
        record = self.records.setdefault(stream, Record([]))
        record.crash_times = [t for t in record.crash_times if self.now - t < PERIOD_S]
        record.crash_times.append(self.now)
        record.restart_pending = True
        if len(record.crash_times) > MAX_RESTARTS:
            cooldown = self.config.cooldown_s
            until = math.inf if cooldown is None else self.now + cooldown
            record.stopped, record.restart_at, record.stopped_until = True, until, until
        else:
            restart_at = self.now + backoff_s(self.config.backoff_s, len(record.crash_times))
            record.stopped, record.restart_at, record.stopped_until = False, restart_at, self.now
        if self.config.reset_on_crash:
            del self.records[stream]  # Never stopped, and no restart is counted.

    def decide(self, name: str, stream: str, command: Command) -> tuple[Any, ...]:
        """The outcome of ``command`` on a live actor, applied to the model."""
        events = self.events.setdefault(stream, [])
        match command:
            case Add(amount) | AddTwice(amount):
                times = 2 if isinstance(command, AddTwice) else 1
                if sum(events) + times * amount < 0:
                    self.counts["rejections"] += 1
                    return ("rejected",)
                events.extend([amount] * times)
                self.counts["commands"] += 1
                every = AGGREGATES[name].snapshot_every
                actor = self.live[stream]
                if every is not None and len(events) - actor.snapshot_at >= every:
                    actor.snapshot_at = len(events)
                    self.snapshot(stream, len(events))
                return ("ok", len(events), tuple(Added(amount) for _ in range(times)))
            case Nothing():
                self.counts["commands"] += 1
                return ("ok", len(events), ())
            case Crash(where):
                self.crash(stream)
                return ("crash", where)
            case Refuse():
                self.counts["append_failures"] += 1
                del self.live[stream]  # rebuilt from the journal at its next call
                return ("refused",)
        raise TypeError(command)

    def pass_time(self, seconds: float) -> None:
        end = self.now + seconds
        while self.config.passivate and self.next_sweep <= end:
            self.now = self.next_sweep
            self.next_sweep += IDLE_S / 4
            self.tick += 1
            for stream in [s for s, a in self.live.items() if a.tick < self.tick - 4]:
                self.passivate(stream)
        self.now = end

    def stopped_entities(self) -> int:
        return sum(1 for r in self.records.values() if r.stopped and self.now < r.stopped_until)


def outcome_of(result: Any) -> tuple[Any, ...]:
    """What a call gave, in the model's terms."""
    if isinstance(result, CommandRejected):
        return ("rejected",)
    if isinstance(result, Boom):
        return ("crash", str(result).split()[0])
    if isinstance(result, ValueError) and "NaN" in str(result):
        return ("refused",)
    if isinstance(result, EntityStopped):
        return ("stopped",)
    if isinstance(result, MailboxTimeout):
        return ("backoff",) if result.waited_for == "restart" else ("timeout", result.waited_for)
    if isinstance(result, BaseException):
        raise result
    if result is None:
        return ("told",)
    return ("ok", result.version, result.events)


async def attempt(call: Awaitable[T]) -> T | Exception:
    try:
        return await call
    except Exception as error:
        return error
