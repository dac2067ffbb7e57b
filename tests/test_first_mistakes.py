"""The mistakes a newcomer makes first are refused with errors that point at the fix."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from journals import FileJournal, Journal, JournalClosed, MemoryJournal
from runtime import Aggregate, InvalidDecision, Runtime, UnregisteredEvent
from runtime.testing import AggregateTest

from .test_runtime_bank import (
    EVENTS,
    Account,
    Deposit,
    Deposited,
    Explode,
    Open,
    Opened,
    account,
    evolve,
)
from .test_runtime_bank import decide as decide_account


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["ask", "tell"])
async def test_a_command_passed_as_the_entity_id_is_called_out_as_swapped(call: str) -> None:
    # str() of a command is no id worth suggesting: the arguments are in the wrong order.
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        send: Any = getattr(rt, call)
        with pytest.raises(TypeError) as raised:
            await send(account, Deposit(100), "42")
        message = str(raised.value)
        assert "entity ids are str, not Deposit: Deposit(amount=100) is where the id" in message
        assert "the aggregate, the entity id, then the command" in message
        assert "str(Deposit" not in message
        assert await journal.stream_version("account-42") == 0


@pytest.mark.anyio
async def test_a_number_or_uuid_as_the_entity_id_is_told_to_be_converted() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        key = uuid.UUID(int=7)
        with pytest.raises(TypeError, match=r"entity ids are str, not UUID: pass str\(UUID\("):
            await rt.ask(account, key, Deposit(1))  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_decide_returning_an_event_class_says_to_make_an_instance() -> None:
    def decide(state: Account, command: object) -> list[Any]:
        return [Deposited]

    forgetful = Aggregate("forgetful", Account(), decide, evolve, events=EVENTS)
    message = r"the class Deposited is not an event .* give an instance of it, such as Deposited"
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(UnregisteredEvent, match=message):
            await rt.ask(forgetful, "1", Deposit(1))
    with pytest.raises(UnregisteredEvent, match=message):
        AggregateTest(account).given(Deposited)  # type: ignore[arg-type]


def _evolve_leniently(state: Account, event: Any) -> Account:
    return Account(state.owner, state.balance + getattr(event, "amount", 0))


@pytest.mark.anyio
async def test_decide_and_evolve_given_in_each_other_s_place_are_called_out() -> None:
    # A type checker refuses this; code without type hints meets the runtime's check.
    functions: list[Any] = [_evolve_leniently, decide_account]
    swapped = Aggregate("swapped", Account(), *functions, events=EVENTS)
    message = (
        r"returned a Account \(Account\(owner='', balance=1, deposits=0\)\), the type of its "
        r"state \(are decide and evolve given in the wrong order\? Aggregate\(name, initial, "
        r"decide, evolve, events=\.\.\.\)\)"
    )
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(InvalidDecision, match=message):
            await rt.ask(swapped, "1", Deposit(1))
    with pytest.raises(InvalidDecision, match=message):
        AggregateTest(swapped).when(Deposit(1))

    # Any other object is no state, and is not said to be one.
    def one_event(state: Account, command: object) -> Any:
        return Deposited(1)

    other = Aggregate("other", Account(), one_event, evolve, events=EVENTS)
    with pytest.raises(
        InvalidDecision, match=r"returned a Deposited \(Deposited\(amount=1\)\); it"
    ):
        AggregateTest(other).when(Deposit(1))


@pytest.mark.anyio
async def test_a_command_class_sent_as_a_command_is_called_out_when_decide_crashes() -> None:
    open_class: Any = Open  # A type checker refuses it; code without hints meets the note.
    note = "the command sent to aggregate 'account' is the class Open itself; send an instance"
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        with pytest.raises(TypeError, match=r"not an account command") as crashed:
            await rt.ask(account, "1", open_class)
        assert note in "".join(getattr(crashed.value, "__notes__", ()))
        with pytest.raises(RuntimeError, match="boom") as exploded:
            await rt.ask(account, "2", Explode())
        assert not hasattr(exploded.value, "__notes__")  # An instance: no such note.
    with pytest.raises(TypeError, match=r"not an account command") as crashed:
        AggregateTest(account).when(open_class)
    assert note in "".join(getattr(crashed.value, "__notes__", ()))


@dataclass
class _Ledger:
    owner: str
    balance: int = 0


def _decide_ledger(state: Any, command: Open | Deposit) -> list[Opened | Deposited]:
    if isinstance(command, Open):
        return [Opened(command.owner)]
    # Reads the state as a ledger, as the entity has been opened: None has no balance.
    return [Deposited(command.amount)] if state.balance + command.amount >= 0 else []


def _evolve_without_return(state: _Ledger | None, event: Opened | Deposited) -> Any:
    if isinstance(event, Opened):
        state = _Ledger(event.owner)
    elif state is not None:
        state.balance += event.amount
    # The 'return state' is missing: the entity's state is None from its first event on.


@pytest.mark.anyio
async def test_a_state_left_none_by_evolve_is_called_out_when_decide_crashes_on_it() -> None:
    ledger = Aggregate("ledger", None, _decide_ledger, _evolve_without_return, events=EVENTS)
    note = "state of this 'ledger' entity was None, with events folded into it: does evolve return"
    async with MemoryJournal() as journal, Runtime(journal) as rt:
        await rt.ask(ledger, "1", Open("ada"))
        with pytest.raises(AttributeError) as crashed:
            await rt.ask(ledger, "1", Deposit(1))
        assert note in "".join(getattr(crashed.value, "__notes__", ()))
        with pytest.raises(AttributeError) as crashed:
            await rt.ask(ledger, "2", Deposit(1))  # No event yet: None is its initial state.
        assert not hasattr(crashed.value, "__notes__")
    with pytest.raises(AttributeError) as crashed:
        AggregateTest(ledger).given(Opened("ada")).when(Deposit(1))
    assert note in "".join(getattr(crashed.value, "__notes__", ()))
    with pytest.raises(AttributeError) as crashed:
        AggregateTest(ledger).when(Deposit(1))
    assert not hasattr(crashed.value, "__notes__")


@pytest.mark.parametrize("sequence", [list, tuple])
def test_a_list_given_as_one_event_says_to_give_them_one_by_one(sequence: type[Any]) -> None:
    events = sequence([Opened("ada"), Deposited(5)])
    kind = sequence.__name__
    with pytest.raises(UnregisteredEvent, match=rf"a {kind} is not an event .* given\(\*events\)"):
        AggregateTest(account).given(events)


def test_a_state_class_as_the_initial_state_is_refused_when_the_aggregate_is_made() -> None:
    # Otherwise the first evolve fails on the class, far from the mistake.
    state_class: Any = Account
    with pytest.raises(
        TypeError,
        match=r"initial state of aggregate 'account' is the class Account; give an instance of "
        r"it: Aggregate\('account', Account\(\), \.\.\.\)",
    ):
        Aggregate("account", state_class, decide_account, evolve, events=EVENTS)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["memory", "file"])
async def test_a_runtime_on_a_journal_not_opened_is_refused_as_it_starts(
    kind: str, tmp_path: Path
) -> None:
    journal: Journal = MemoryJournal() if kind == "memory" else FileJournal(tmp_path / "j")
    with pytest.raises(JournalClosed, match="the runtime's journal is not open: enter it first"):
        async with Runtime(journal):
            pytest.fail("the runtime started on a journal that is not open")
    async with journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Deposit(1))
    # Closed by its owner: refused again, saying that it cannot be entered again (as the
    # journal says when it is entered, by its owner or by the runtime that was to own it).
    with pytest.raises(JournalClosed, match=r"closed already cannot be entered again: make a new"):
        async with Runtime(journal):
            pass
    with pytest.raises(JournalClosed, match=r"was closed; create a new one"):
        async with Runtime(journal, owns_journal=True):
            pass
    with pytest.raises(JournalClosed, match="open it with 'async with journal:'"):
        await journal.stream_version("account-42")


async def _evolve_async(state: Account, event: Any) -> Account:
    return evolve(state, event)


async def _decide_async(state: Account, command: Any) -> list[Any]:
    return decide_account(state, command)


class _AsyncCall:
    async def __call__(self, state: Account, event: Any) -> Account:
        return evolve(state, event)


@pytest.mark.parametrize(
    ("role", "functions"),
    [
        ("evolve", {"evolve": _evolve_async}),
        ("evolve", {"evolve": _AsyncCall()}),
        ("decide", {"decide": _decide_async}),
        ("decode_state", {"decode_state": _evolve_async}),
    ],
)
def test_an_async_function_is_refused_when_the_aggregate_is_made(
    role: str, functions: dict[str, Any]
) -> None:
    # Called synchronously, an async evolve made the state a coroutine object, and commands
    # went on being decided against it without a word.
    arguments: dict[str, Any] = {"decide": decide_account, "evolve": evolve, **functions}
    decide, evolve_ = arguments.pop("decide"), arguments.pop("evolve")
    with pytest.raises(
        TypeError,
        match=rf"{role} of aggregate 'account' must be a plain function, not the async .*"
        r"coroutine would never run. Write it with 'def'",
    ):
        Aggregate("account", Account(), decide, evolve_, events=EVENTS, **arguments)


def test_something_that_cannot_be_called_is_refused_as_decide() -> None:
    with pytest.raises(TypeError, match=r"decide of aggregate 'account' must be a function, not"):
        Aggregate("account", Account(), None, evolve, events=EVENTS)  # type: ignore[arg-type]
