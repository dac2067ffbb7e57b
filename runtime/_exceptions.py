"""Every public exception of eventfold's actor runtime.

Hierarchy (``EventfoldError`` is shared with the journals)::

    EventfoldError
    ├── CommandRejected          a domain rejection raised by ``decide``: an answer, not a crash
    └── ActorRuntimeError        something about the runtime or one of its actors
        ├── RuntimeClosed        closed by you: the runtime is not running (any more)
        ├── RuntimeEnteredInAnotherTask  left in a task other than the one that entered it
        ├── MailboxFull          ``tell_nowait``: the entity's mailbox, or the outbox, is full
        ├── MailboxTimeout       ``ask``/``tell`` waited longer than ``timeout_s``; not executed
        ├── EntityStopped        the supervisor gave up on the entity after too many crashes
        ├── UnknownEventType     a stored event whose type or version the aggregate does not know
        ├── SnapshotShapeMismatch  a snapshot's data lacks fields of the state, or holds others
        ├── UnregisteredEvent    ``decide`` returned an event whose class is not registered
        ├── InvalidDecision      ``decide`` returned something other than a list of events
        ├── InitialStateChanged  the aggregate's ``initial`` was changed in place
        └── VersionNotReached    ``state_at(version=N)`` above the entity's durable version

``UnregisteredEvent`` and ``InvalidDecision`` are also ``TypeError`` subclasses and count as
crashes in ``decide``; ``SnapshotShapeMismatch`` is a ``TypeError`` too (activation skips
such a snapshot and replays the events); ``VersionNotReached`` is also a ``ValueError``,
``MailboxTimeout`` a ``TimeoutError``, and ``RuntimeEnteredInAnotherTask`` a
``RuntimeError``.

A crash in user code (``decide`` or ``evolve`` raising anything but ``CommandRejected``) is
not wrapped: the command that caused it fails with the original exception, and the supervisor
restarts the actor. Journal errors (``JournalFailed``, ``ConcurrencyError``, ...) also reach
callers unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from journals import EventfoldError

if TYPE_CHECKING:
    from anyio import TaskInfo


class CommandRejected(EventfoldError):
    """Raise from ``decide`` to reject a command for a domain reason.

    The caller of ``ask`` gets this exception; the actor keeps its state and nothing is written.
    Subclass it for rejections that callers want to tell apart::

        if command.amount > state.balance:
            raise CommandRejected("insufficient funds")
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ActorRuntimeError(EventfoldError):
    """Base class of the runtime's own errors."""


class RuntimeClosed(ActorRuntimeError):
    """The runtime is not running: use it inside ``async with Runtime(journal) as runtime:``."""


class RuntimeEnteredInAnotherTask(ActorRuntimeError, RuntimeError):
    """The runtime was left (``__aexit__``) in a task other than the one that entered it.
    Nothing was done: the runtime is still running, and the task that entered it can leave it
    as usual (commands in flight are answered, an owned journal is flushed and closed).

    The runtime's own tasks run in a task group, and only the task that entered a task group
    may leave it. Enter and leave the runtime in one task that lives as long as the runtime
    is used. A ``RuntimeError`` as well, as the error from the task group was before.
    """

    def __init__(self, entered_in: TaskInfo, leaving_in: TaskInfo) -> None:
        self.entered_in = entered_in
        self.leaving_in = leaving_in
        super().__init__(
            f"this Runtime was entered in task {entered_in.name!r} (id {entered_in.id}) and "
            f"cannot be left in another task, {leaving_in.name!r} (id {leaving_in.id}): its "
            f"tasks run in a task group, which only the task that entered it can leave. "
            f"Nothing was done; the runtime is still running. Enter and leave it in the same "
            f"task, one that lives as long as the runtime is used and does not end before "
            f"leaving it: 'async with Runtime(journal) as runtime:' around the service's whole "
            f"life (a web framework's lifespan context manager does this), not an enter in a "
            f"startup hook and a leave in a shutdown hook run by other tasks"
        )


class MailboxFull(ActorRuntimeError):
    """The entity already has as many unanswered calls as its mailbox bound allows.

    A mailbox slot is held by each accepted command and ``state()`` read until it is
    answered, and by an append whose caller went away until its outcome is known.
    """

    def __init__(self, stream_id: str, bound: int, *, outbox: bool = False) -> None:
        self.stream_id = stream_id
        self.bound = bound
        where = (
            f"the runtime's tell_nowait queue is full ({bound} commands waiting to be delivered)"
            if outbox
            else f"the mailbox of {stream_id!r} is full ({bound} unanswered commands or reads)"
        )
        setting = "outbox_bound" if outbox else "mailbox_bound"
        super().__init__(
            f"{where}; the command for {stream_id!r} was not accepted. Retry later, use "
            f"'await runtime.tell(...)' to wait for room, or raise Runtime({setting}=...)"
        )


WaitedFor = Literal["room", "activation", "restart", "settling"]

_WAITS: dict[str, str] = {
    "room": "its mailbox stayed full (as many unanswered commands and reads as its "
    "mailbox_bound allows)",
    "activation": "it was still being activated (its snapshot and events read from the "
    "journal), or an earlier command's events were still waiting for room in the journal",
    "restart": "it was waiting out its restart backoff after a crash (see RestartPolicy)",
    "settling": "its actor had broken (a crash or a failed append) and its commands in "
    "flight had not settled yet, so it could not be rebuilt",
}


class MailboxTimeout(ActorRuntimeError, TimeoutError):
    """The command was not accepted within ``timeout_s``; it was not executed.

    ``waited_for`` says what the wait was for when the deadline passed: ``"room"`` in the
    entity's mailbox, its ``"activation"`` (or an earlier command's append waiting for room
    in the journal), its ``"restart"`` backoff after a crash, or a broken actor's commands in
    flight ``"settling"`` before it is rebuilt.
    """

    def __init__(self, stream_id: str, timeout_s: float, waited_for: WaitedFor = "room") -> None:
        self.stream_id = stream_id
        self.timeout_s = timeout_s
        self.waited_for = waited_for
        super().__init__(
            f"{stream_id!r} did not accept the command within {timeout_s} s: "
            f"{_WAITS[waited_for]}; the command was not executed and may be retried"
        )


class EntityStopped(ActorRuntimeError):
    """The supervisor stopped the entity after too many crashes; commands fail fast.

    ``until_s``: the reading of the runtime's clock (``Runtime(clock=...)``, monotonic
    seconds by default) at which its cool-down ends, or None when only ``reset`` releases
    it; ``cooldown_left_s``: the seconds of cool-down left when the command was refused.
    ``last_failure``: a copy of the last crash without its frames, its traceback in a note.
    """

    def __init__(
        self,
        stream_id: str,
        last_failure: BaseException,
        until_s: float | None,
        cooldown_left_s: float | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.last_failure = last_failure
        self.until_s = until_s
        self.cooldown_left_s = cooldown_left_s
        if until_s is None:
            when = "until 'runtime.reset(...)' is called"
        else:
            left = "" if cooldown_left_s is None else f" (in {cooldown_left_s:.3g} s)"
            when = f"until its cool-down ends{left} or 'runtime.reset(...)' is called"
        super().__init__(
            f"{stream_id!r} was stopped after more crashes than its RestartPolicy allows (last "
            f"failure: {last_failure!r}); commands fail fast {when}. Fix the cause, then reset it"
        )


class UnknownEventType(ActorRuntimeError):
    """A stored event's type name or version is not registered with the aggregate."""


class SnapshotShapeMismatch(ActorRuntimeError, TypeError):
    """The default ``decode_state`` of a dataclass state was given snapshot data whose keys are
    not the state's fields: the snapshot was taken while the state had another shape.

    Building the state from it would fill a field added since with its default rather than
    what the events gave it. Activation and ``state_at`` skip such a snapshot (logged, as a
    warning) and fold the events instead. Bump the aggregate's ``snapshot_schema`` whenever
    the state's shape changes, so that snapshots of the earlier shape are skipped unread.
    """

    def __init__(
        self, state_class: str, missing: list[str], unknown: list[str], stored: list[str]
    ) -> None:
        self.missing = missing
        self.unknown = unknown
        parts = []
        if missing:
            parts.append(f"no field {', '.join(map(repr, missing))} of {state_class}")
        if unknown:
            parts.append(f"{', '.join(map(repr, unknown))}, which {state_class} has no field for")
        super().__init__(
            f"the snapshot data holds {' and '.join(parts)} (its keys: {stored!r:.200}): it was "
            f"taken while the state had another shape, and {state_class}(**data) would not "
            f"give the state the events give. Bump the aggregate's snapshot_schema whenever "
            f"the state's shape changes, so that snapshots of the earlier shape are skipped"
        )


class UnregisteredEvent(ActorRuntimeError, TypeError):
    """``decide`` returned an object whose class is not one of the aggregate's event types."""


class InvalidDecision(ActorRuntimeError, TypeError):
    """``decide`` returned something other than a list of events (one event, ``None``, ...).

    A crash in ``decide``: the command fails with it and the supervisor's policy applies.
    """

    def __init__(
        self, aggregate: str, returned: object, *, state_type: type[Any] | None = None
    ) -> None:
        self.aggregate = aggregate
        self.returned = returned
        if returned is None:
            what = "None (is a 'return' missing?)"
        else:
            what = f"a {type(returned).__qualname__} ({returned!r:.200})"
            if type(returned) is state_type:
                # What evolve returns: the two functions given in each other's place.
                what += (
                    ", the type of its state (are decide and evolve given in the wrong "
                    "order? Aggregate(name, initial, decide, evolve, events=...))"
                )
        super().__init__(
            f"decide of aggregate {aggregate!r} returned {what}; it must return a list of "
            f"events: [event] for one, [] for none, or raise CommandRejected to refuse"
        )


class VersionNotReached(ActorRuntimeError, ValueError):
    """``state_at(version=N)`` asked for a version above the entity's durable version (one
    it never reached, or one whose events are decided and not durable yet)."""

    def __init__(self, stream_id: str, version: int, durable_version: int) -> None:
        self.stream_id = stream_id
        self.version = version
        self.durable_version = durable_version
        has = (
            "has no events"
            if durable_version == 0
            else f"has {durable_version} durable event{'s' if durable_version > 1 else ''}"
        )
        super().__init__(
            f"{stream_id!r} {has}, so it has no durable version {version} (not reached yet, or "
            f"never): state_at reads only durable events; ask for a version from 0 (the "
            f"initial state) to {durable_version}"
        )


class InitialStateChanged(ActorRuntimeError):
    """The aggregate's ``initial`` state, which every entity starts from, was changed in place.

    Raised when an entity is activated (a crash of that activation) or a past state is read,
    for an ``initial`` that can be changed (a dict, a list, a dataclass that is not frozen):
    an ``evolve`` that changes its state in place was given ``initial`` itself, or code
    changed a state it got from ``Runtime.state`` while it was still ``initial``. Every new
    entity would start from that changed object, and share it.
    """

    def __init__(self, aggregate: str, initial: object, now: object) -> None:
        self.aggregate = aggregate
        super().__init__(
            f"the initial state of aggregate {aggregate!r} was changed in place: it was "
            f"{initial!r:.200} and is now {now!r:.200}. Every entity starts from that one "
            f"object, so entities of {aggregate!r} are not activated any more in this process. "
            f"Make evolve return a new state (dataclasses.replace, or a copy of what it "
            f"changes), or give initial=None and let evolve make each entity's own state from "
            f"its first event; and do not change a state read with runtime.state()"
        )
