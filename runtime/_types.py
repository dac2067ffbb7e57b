"""The values the runtime answers with: command results, lifecycle notices, statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, TypeVar

from journals import JournalStatistics

E_co = TypeVar("E_co", covariant=True)

LifecycleKind = Literal[
    "started", "recovered", "crashed", "restarted", "stopped", "passivated", "reset"
]


class CommandResult(NamedTuple, Generic[E_co]):
    """What ``ask`` answers once the command's events are durable.

    ``version`` is the entity's version after the command; ``position`` the global position
    of its last event, or ``None`` when the command emitted no events; ``events`` the events.

    A named tuple rather than a frozen dataclass: one is built per command on the hot path,
    and a tuple is built in half the time (``version, position, events = result`` works too).
    """

    version: int
    position: int | None
    events: tuple[E_co, ...]


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A notice for observers (``Runtime(on_lifecycle=...)``) about one entity's actor.

    ``started``: activated with no history; ``recovered``: activated from snapshot plus tail;
    ``crashed``: user code raised (``error``); ``restarted``: activated again after a crash,
    while the supervisor remembers it (see ``RestartPolicy``);
    ``stopped``: the supervisor gave up (``error`` is the last failure); ``passivated``:
    evicted from memory while idle; ``reset``: a stopped entity was released by ``reset``
    (``version`` and ``error`` are those of its last crash).
    """

    kind: LifecycleKind
    aggregate: str
    stream_id: str
    version: int
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """A snapshot of the runtime's counters (since it started) and of its live actors.

    ``commands`` counts the commands answered with success (a rejection, a crash or a failed
    append is counted in its own field instead); ``commands_per_s`` is ``commands /
    uptime_s``, the average since the runtime started, not a recent rate.
    ``commands_per_s_recent`` is the recent rate: the commands answered with success in the
    last second, per second, read from samples of ``commands`` taken a quarter of a second
    apart (so off by at most a quarter of a second's commands when the rate changes, and
    exact across a pause); 0 once a second has passed since the first sample after the
    last command (so within a second and a half of that command), before the runtime
    starts and once it has exited; while the runtime is younger than a second, the average
    since it started. For the rate over a longer interval, take two records and divide the
    difference of their ``commands`` by that of their ``uptime_s``. The counters are Python
    ints: they never wrap, and only a new runtime starts them again.

    ``commands_in_flight`` counts the mailbox slots taken in all mailboxes, and
    ``mailbox_depth_max`` those of the fullest one (never above the mailbox bound): a slot
    is held by each accepted command (asked, told, or delivered out of ``tell_nowait``'s
    outbox) and each ``state()`` read until it is answered, and by a command whose caller
    was cancelled while its events were being appended until that append's outcome is
    known; ``callers_waiting_for_room`` counts the callers blocked because
    a mailbox was full (not accepted yet: backpressure). ``append_failures`` counts the
    commands, asked or told, whose events the journal did not take: their append failed (a
    failed journal, a conflict, an outcome lost) or was refused (``EventEncodingError``), and
    the journal's error went to the caller (or to the log, for a told command). A command
    without events is not counted, even when its answer fails with an earlier append's error,
    nor is one whose caller was cancelled before its append's outcome was known.

    ``outbox_depth`` counts the commands ``tell_nowait`` accepted that are not delivered yet:
    queued in the outbox, or being accepted by their entity's mailbox (they hold no mailbox
    slot until then, so neither ``mailbox_depth_max`` nor ``callers_waiting_for_room`` shows
    them). ``outbox_undelivered`` counts the commands ``tell_nowait`` accepted that were
    never delivered, and so never executed: refused at delivery (their entity stopped by the
    supervisor, its activation failed, another aggregate object of the same name, the
    runtime's tasks ended) or left in the outbox when shutdown stopped waiting (see
    ``shutdown_timeout_s``); each is also logged. Commands delivered and then rejected,
    crashed or failed are counted like asked ones (``rejections``, ``crashes``,
    ``append_failures``); ``tell`` raises what refuses a command to its caller, counted
    only as below (a ``MailboxTimeout``, an ``EntityStopped``).

    The calls refused under load: ``mailbox_timeouts`` counts those (``ask``, ``tell``,
    ``state``) refused with ``MailboxTimeout``, whatever the wait their ``timeout_s`` ended
    (for room, an activation, a restart's backoff, a broken actor's commands settling); a
    caller cancelled while it waited, or refused with ``RuntimeClosed`` at shutdown, is not
    counted. ``mailbox_full_refusals`` and ``outbox_full_refusals`` count the ``tell_nowait``
    calls refused with ``MailboxFull`` because the entity's mailbox, or the outbox
    (``outbox_bound``), was full. ``entity_stopped_refusals`` counts the calls (``ask``,
    ``tell``, ``state``) refused with ``EntityStopped`` because the supervisor stopped their
    entity, a caller that slept out a restart backoff and found it stopped included, and the
    ``tell_nowait`` commands refused so at delivery (also counted in ``outbox_undelivered``);
    like ``mailbox_timeouts`` it counts a refusal as it reaches its caller, so not a caller
    cancelled meanwhile (a ``tell`` whose command is refused just as its caller is
    cancelled gets the cancellation).

    Two kinds of the callers held now before their command runs for something other than
    room in a mailbox: ``callers_waiting_for_restart`` counts those sleeping out their
    entity's restart backoff after a crash (see ``RestartPolicy``);
    ``callers_waiting_for_journal`` those held by a full journal (its ``queue_bytes_max``;
    the journal's backpressure): the caller of an ``ask`` whose append waits to be placed,
    and the callers of the same entity held behind such an append, since the entity is
    decided no further meanwhile. A command of the outbox
    held so before its delivery is counted in ``outbox_depth`` only. No gauge counts the
    callers waiting for their entity's activation (the caller that replays it and those
    behind it) or for a broken actor's commands in flight to settle before it is rebuilt.
    ``appends_waiting_for_journal`` counts the appends waiting to be placed, asked or told:
    a told command's append (``tell``, ``tell_nowait``) holds its entity too, but no caller,
    since its caller has returned. A journal that waits for room inside ``append`` (one
    without ``queue_append_columns``) shows neither.

    Fields added since ``outbox_depth`` come after the older ones, the latest with defaults,
    so that the fields before them keep their places.
    """

    live_actors: int
    busy_actors: int
    commands_in_flight: int
    mailbox_depth_max: int
    callers_waiting_for_room: int
    commands: int
    commands_per_s: float
    rejections: int
    append_failures: int
    crashes: int
    restarts: int
    stopped_entities: int
    activations: int
    passivations: int
    snapshots: int
    snapshots_skipped: int
    uptime_s: float
    journal: JournalStatistics
    outbox_depth: int
    outbox_undelivered: int
    mailbox_timeouts: int = 0
    mailbox_full_refusals: int = 0
    outbox_full_refusals: int = 0
    callers_waiting_for_restart: int = 0
    callers_waiting_for_journal: int = 0
    commands_per_s_recent: float = 0.0
    entity_stopped_refusals: int = 0
    appends_waiting_for_journal: int = 0
