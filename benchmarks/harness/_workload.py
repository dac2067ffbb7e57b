"""What the scenarios drive: an aggregate and a command factory (built in, or the user's own).

The command factory's signature is ``commands(entity_id: str, index: int) -> command``:
``index`` counts the commands one entity has been sent in this run, from 0, and each entity's
commands are sent in index order. A factory must therefore give, for every index, a command
that the aggregate accepts after the commands of the lower indices (for example: index 0
opens the account, every later index deposits). Each command must cause exactly one event:
figures are reported per command and per event alike. ``load_workload`` decides the first
``COMMANDS_CHECKED`` commands of one entity before anything runs and refuses a workload whose
commands cause no event or several.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson

from journals import NewEvent
from runtime import Aggregate, CommandRejected, Runtime

CommandFactory = Callable[[str, int], Any]


@dataclass(frozen=True, slots=True)
class Deposit:
    amount: int
    reference: str


@dataclass(frozen=True, slots=True)
class Deposited:
    amount: int
    reference: str


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0
    deposits: int = 0


def _decide(state: Account, command: Deposit) -> list[Deposited]:
    if command.amount <= 0:
        raise CommandRejected(f"a deposit must be positive, not {command.amount}")
    return [Deposited(command.amount, command.reference)]


def _evolve(state: Account, event: Deposited) -> Account:
    return Account(state.balance + event.amount, state.deposits + 1)


ACCOUNT = Aggregate(
    "bench.account",
    Account(),
    _decide,
    _evolve,
    events={"Deposited": Deposited},
)
"""The built-in workload's aggregate: an account that takes deposits, one event each."""


def deposit_commands(entity_id: str, index: int) -> Deposit:
    """The built-in command factory: deposit 1 with a reference unique to the command."""
    return Deposit(1, f"deposit-{entity_id}-{index:010d}")


@dataclass(frozen=True, slots=True)
class Workload:
    """An aggregate and its command factory, with the name the report shows for them."""

    aggregate: Aggregate[Any, Any, Any]
    commands: CommandFactory
    name: str

    def sample_event_data(self) -> Any:
        """The JSON data of the first event of an entity: what the journal encodes per event."""
        command = self.commands("sample", 0)
        events = self.aggregate.decide(self.aggregate.initial, command)
        if not events:
            raise WorkloadError(
                f"the first command of {self.name} ({command!r}) causes no event; the "
                f"benchmarks need one event per command"
            )
        return orjson.loads(orjson.dumps(events[0]))


DEFAULT_WORKLOAD = Workload(ACCOUNT, deposit_commands, "built-in account (one deposit event)")


class WorkloadError(ValueError):
    """``--aggregate`` or ``--commands`` does not name something the benchmarks can drive."""


@contextmanager
def current_directory_importable() -> Iterator[None]:
    """Let imports find modules in the current directory while the block runs.

    ``python -m benchmarks.harness`` puts the current directory first on ``sys.path``; the
    ``eventfold`` console script puts its own directory there instead. Either way a user who
    runs the benchmarks from the directory holding their package finds it, and the import
    path is as it was afterwards.
    """
    try:
        directory = os.getcwd()
    except OSError:  # The current directory was removed: there is nothing to find in it.
        yield
        return
    if "" in sys.path or directory in sys.path:
        yield
        return
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(directory)


def _import(module_name: str, reference: str, option: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or module_name
        if module_name != missing and not module_name.startswith(missing + "."):
            raise _import_failed(module_name, reference, option, error) from error
        top, _, _ = missing.partition(".")
        if missing != top:
            raise WorkloadError(
                f"{option} {reference!r}: the package {top!r} has no module {missing!r}; "
                f"check the module's name"
            ) from None
        raise WorkloadError(
            f"{option} {reference!r}: no module {top!r} in the current directory "
            f"({_current_directory()}) or among the installed packages; run from the "
            f"directory that holds {top!r}, add that directory to PYTHONPATH, or install it"
        ) from None
    except Exception as error:
        raise _import_failed(module_name, reference, option, error) from error


def _current_directory() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "removed"


def _import_failed(module_name: str, reference: str, option: str, error: Exception) -> Exception:
    return WorkloadError(
        f"{option} {reference!r}: importing {module_name!r} failed "
        f"({type(error).__name__}: {error})"
    )


def _load(reference: str, option: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise WorkloadError(
            f"{option} {reference!r} must be 'package.module:name' (a module, a colon, a name)"
        )
    module = _import(module_name, reference, option)
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise WorkloadError(
                f"{option} {reference!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    return value


COMMANDS_CHECKED = 100
"""How many commands of one entity ``load_workload`` decides, without a runtime, to check
that each causes exactly one event."""


def check_one_event_each(workload: Workload, entity_id: str = "sample") -> None:
    """Refuse a workload whose first ``COMMANDS_CHECKED`` commands to ``entity_id`` do not
    each cause exactly one event (``WorkloadError``).

    A command that causes no event is answered without waiting for the journal, so its caller
    never lets the other callers run: the measured windows would never open and the run would
    spin for ever (on uvloop even Ctrl-C cannot stop it). A command that causes several
    would be counted as one one-event command. The check stops at the first command that the
    factory, ``decide`` or ``evolve`` fails on: the run reports that as the scenario's
    failure, in its own words.
    """
    aggregate = workload.aggregate
    state = aggregate.initial
    for index in range(COMMANDS_CHECKED):
        try:
            command = workload.commands(entity_id, index)
            events = aggregate.decide(state, command)
            count = len(events)
            if count == 1:
                state = aggregate.fold(state, events)
        except Exception:
            return
        if count != 1:
            said = "no event" if count == 0 else f"{count} events"
            raise WorkloadError(
                f"command {index} of entity {entity_id!r} ({command!r:.200}) causes {said}; "
                f"the benchmarks time one-event commands, so commands(entity_id, index) must "
                f"give, for every index, a command that causes exactly one event"
            )


def load_workload(aggregate_reference: str, commands_reference: str) -> Workload:
    """The user's workload from ``--aggregate package.module:name --commands package.module:f``.

    Modules are imported from the current directory first, then from the installed packages.
    """
    with current_directory_importable():
        aggregate = _load(aggregate_reference, "--aggregate")
        commands = _load(commands_reference, "--commands")
    if not isinstance(aggregate, Aggregate):
        raise WorkloadError(
            f"--aggregate {aggregate_reference!r} is a {type(aggregate).__name__}, not an "
            f"eventfold Aggregate; name the module-level Aggregate(...) object"
        )
    if not callable(commands):
        raise WorkloadError(
            f"--commands {commands_reference!r} is not callable; it must be a function "
            f"commands(entity_id: str, index: int) -> command"
        )
    if inspect.iscoroutinefunction(commands):
        raise WorkloadError(
            f"--commands {commands_reference!r} is an async function; the benchmarks make "
            f"each command just before sending it, without awaiting: make it a plain def "
            f"commands(entity_id: str, index: int) -> command"
        )
    workload = Workload(aggregate, commands, f"{aggregate_reference} with {commands_reference}")
    try:
        workload.sample_event_data()
        check_one_event_each(workload)
    except WorkloadError:
        raise
    except Exception as error:
        raise WorkloadError(
            f"the first command of {workload.name} cannot be decided on the aggregate's "
            f"initial state ({type(error).__name__}: {error}); commands(entity_id, 0) must "
            f"give a command the new entity accepts"
        ) from error
    return workload


class Sender:
    """Sends each entity its commands in index order through ``Runtime.ask``.

    The command is made just before ``ask`` is called, so that commands to one entity reach
    it in index order even when several callers share the entity (the runtime decides one
    entity's commands in the order they arrive).
    """

    __slots__ = ("_aggregate", "_ask", "_commands", "_counts")

    def __init__(self, runtime: Runtime, workload: Workload) -> None:
        self._ask = runtime.ask
        self._aggregate = workload.aggregate
        self._commands = workload.commands
        self._counts: dict[str, int] = {}

    def ask(self, entity_id: str) -> Awaitable[Any]:
        """Make the entity's next command now; answer the ``Runtime.ask`` call to await.

        Not a coroutine itself: the command is made at call time, and awaiting the answer
        adds no frame of the benchmark's own to each measured command.
        """
        index = self._counts.get(entity_id, 0)
        self._counts[entity_id] = index + 1
        return self._ask(self._aggregate, entity_id, self._commands(entity_id, index))


def history(workload: Workload, entity_id: str, count: int) -> list[NewEvent]:
    """The journal form of an entity's first ``count`` events, decided without a runtime.

    Recovery scenarios write these straight to the journal (fast, in large appends) and then
    measure how the runtime reads them back: they are exactly the events the runtime would
    have stored for the same commands.
    """
    aggregate = workload.aggregate
    state = aggregate.initial
    events: list[Any] = []
    index = 0
    while len(events) < count:
        decided = aggregate.decide(state, workload.commands(entity_id, index))
        if not decided:
            raise WorkloadError(
                f"command {index} of {entity_id!r} caused no event; the benchmarks need "
                f"commands that each cause an event"
            )
        state = aggregate.fold(state, decided)
        events.extend(decided)
        index += 1
    return aggregate.to_new_events(events[:count])
