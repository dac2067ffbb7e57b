"""eventfold's actor runtime: one lightweight actor per entity, on a group-committing journal.

Define an ``Aggregate`` (initial state, ``decide``, ``evolve``, registered event types), then
run commands with ``Runtime``::

    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        result = await runtime.ask(account, "42", Deposit(100))

``runtime.testing`` holds a given/when/then test kit for aggregates.
"""

from ._aggregate import Aggregate as Aggregate
from ._aggregate import EventType as EventType
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._exceptions import ActorRuntimeError as ActorRuntimeError
from ._exceptions import CommandRejected as CommandRejected
from ._exceptions import EntityStopped as EntityStopped
from ._exceptions import InitialStateChanged as InitialStateChanged
from ._exceptions import InvalidDecision as InvalidDecision
from ._exceptions import MailboxFull as MailboxFull
from ._exceptions import MailboxTimeout as MailboxTimeout
from ._exceptions import RuntimeClosed as RuntimeClosed
from ._exceptions import RuntimeEnteredInAnotherTask as RuntimeEnteredInAnotherTask
from ._exceptions import SnapshotShapeMismatch as SnapshotShapeMismatch
from ._exceptions import UnknownEventType as UnknownEventType
from ._exceptions import UnregisteredEvent as UnregisteredEvent
from ._exceptions import VersionNotReached as VersionNotReached
from ._runtime import Runtime as Runtime
from ._supervision import CrashDecision as CrashDecision
from ._supervision import RestartPolicy as RestartPolicy
from ._supervision import decide_after_crash as decide_after_crash
from ._types import CommandResult as CommandResult
from ._types import LifecycleEvent as LifecycleEvent
from ._types import LifecycleKind as LifecycleKind
from ._types import RuntimeStatistics as RuntimeStatistics

__all__ = [
    "ActorRuntimeError",
    "Aggregate",
    "Clock",
    "CommandRejected",
    "CommandResult",
    "CrashDecision",
    "EntityStopped",
    "EventType",
    "InitialStateChanged",
    "InvalidDecision",
    "LifecycleEvent",
    "LifecycleKind",
    "MailboxFull",
    "MailboxTimeout",
    "RestartPolicy",
    "Runtime",
    "RuntimeClosed",
    "RuntimeEnteredInAnotherTask",
    "RuntimeStatistics",
    "SnapshotShapeMismatch",
    "SystemClock",
    "UnknownEventType",
    "UnregisteredEvent",
    "VersionNotReached",
    "decide_after_crash",
]
