"""The README's bank account, used across the runtime tests, and the basic command cycle."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from journals import MemoryJournal
from runtime import Aggregate, CommandRejected, CommandResult, Runtime, RuntimeClosed


@dataclass(frozen=True)
class Open:
    owner: str


@dataclass(frozen=True)
class Deposit:
    amount: int


@dataclass(frozen=True)
class Withdraw:
    amount: int


@dataclass(frozen=True)
class Noop:
    pass


@dataclass(frozen=True)
class Explode:
    """Makes decide crash (a bug in user code, not a domain rejection)."""

    message: str = "boom"


Command = Open | Deposit | Withdraw | Noop | Explode


@dataclass(frozen=True)
class Opened:
    owner: str


@dataclass(frozen=True)
class Deposited:
    amount: int


@dataclass(frozen=True)
class Withdrawn:
    amount: int


Event = Opened | Deposited | Withdrawn


@dataclass(frozen=True)
class Account:
    owner: str = ""
    balance: int = 0
    deposits: int = 0


def decide(state: Account, command: Command) -> list[Event]:
    match command:
        case Open(owner):
            return [Opened(owner)]
        case Deposit(amount):
            return [Deposited(amount)]
        case Withdraw(amount) if amount > state.balance:
            raise CommandRejected("insufficient funds")
        case Withdraw(amount):
            return [Withdrawn(amount)]
        case Noop():
            return []
        case Explode(message):
            raise RuntimeError(message)
    raise TypeError(f"not an account command: {command!r}")


def evolve(state: Account, event: Event) -> Account:
    match event:
        case Opened(owner):
            return replace(state, owner=owner)
        case Deposited(amount):
            return replace(state, balance=state.balance + amount, deposits=state.deposits + 1)
        case Withdrawn(amount):
            return replace(state, balance=state.balance - amount)
    raise TypeError(f"not an account event: {event!r}")


EVENTS = {"Opened": Opened, "Deposited": Deposited, "Withdrawn": Withdrawn}


def make_account(**options: object) -> Aggregate[Account, Command, Event]:
    return Aggregate("account", Account(), decide, evolve, events=EVENTS, **options)  # type: ignore[arg-type]


account = make_account()


@pytest.mark.anyio
async def test_ask_answers_version_position_and_events() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        first = await runtime.ask(account, "42", Open("ada"))
        second = await runtime.ask(account, "42", Deposit(100))
        other = await runtime.ask(account, "7", Open("bob"))
        assert first == CommandResult(1, 1, (Opened("ada"),))
        assert second == CommandResult(2, 2, (Deposited(100),))
        assert other == CommandResult(1, 3, (Opened("bob"),))
        assert await runtime.state(account, "42") == Account("ada", 100, 1)
        stored = [(e.stream_id, e.version, e.type) async for e in journal.read_all()]
    assert stored == [
        ("account-42", 1, "account.Opened/1"),
        ("account-42", 2, "account.Deposited/1"),
        ("account-7", 1, "account.Opened/1"),
    ]


@pytest.mark.anyio
async def test_rejection_is_an_answer_and_writes_nothing() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(account, "42", Open("ada"))
            with pytest.raises(CommandRejected, match="insufficient funds") as caught:
                await runtime.ask(account, "42", Withdraw(1))
            assert caught.value.reason == "insufficient funds"
            assert (await runtime.ask(account, "42", Deposit(5))).version == 2
            statistics = runtime.statistics()
            assert statistics.rejections == 1
            assert statistics.crashes == 0
            assert statistics.activations == 1
        assert await journal.stream_version("account-42") == 2


@pytest.mark.anyio
async def test_command_without_events_answers_the_current_version() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        assert await runtime.ask(account, "42", Noop()) == CommandResult(1, None, ())
    assert journal.statistics().events == 1


@pytest.mark.anyio
async def test_an_entity_resumes_from_its_history_in_a_new_runtime() -> None:
    async with MemoryJournal() as journal:
        async with Runtime(journal) as runtime:
            await runtime.ask(account, "42", Open("ada"))
            await runtime.ask(account, "42", Deposit(30))
        events: list[str] = []
        async with Runtime(journal, on_lifecycle=lambda e: events.append(e.kind)) as runtime:
            result = await runtime.ask(account, "42", Withdraw(10))
            assert result.version == 3
            assert await runtime.state(account, "42") == Account("ada", 20, 1)
        assert events == ["recovered"]


@pytest.mark.anyio
async def test_commands_outside_the_context_are_refused() -> None:
    async with MemoryJournal() as journal:
        runtime = Runtime(journal)
        with pytest.raises(RuntimeClosed, match="async with Runtime"):
            await runtime.ask(account, "42", Open("ada"))
        async with runtime:
            await runtime.ask(account, "42", Open("ada"))
        # Not "send commands inside 'async with'": they were, and it is over.
        shut_down = r"shutting down or has shut down \(its 'async with' block was left\)"
        with pytest.raises(RuntimeClosed, match=shut_down):
            await runtime.ask(account, "42", Deposit(1))
        with pytest.raises(RuntimeClosed, match=shut_down):
            runtime.tell_nowait(account, "42", Deposit(1))
        with pytest.raises(RuntimeClosed, match=shut_down):
            await runtime.tell(account, "42", Deposit(1))
