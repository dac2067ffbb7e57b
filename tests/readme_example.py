from dataclasses import dataclass, replace

import anyio

from journals import FileJournal
from runtime import Aggregate, CommandRejected, Runtime


@dataclass(frozen=True)
class Deposit: amount: int
@dataclass(frozen=True)
class Withdraw: amount: int
@dataclass(frozen=True)
class Deposited: amount: int
@dataclass(frozen=True)
class Withdrawn: amount: int
@dataclass(frozen=True)
class Account: balance: int = 0


def decide(state: Account, command: Deposit | Withdraw) -> list[Deposited | Withdrawn]:
    match command:
        case Deposit(amount): return [Deposited(amount)]
        case Withdraw(amount) if amount > state.balance: raise CommandRejected("insufficient funds")
        case Withdraw(amount): return [Withdrawn(amount)]
    raise TypeError(f"not an account command: {command!r}")


def evolve(state: Account, event: Deposited | Withdrawn) -> Account:
    match event:
        case Deposited(amount): return replace(state, balance=state.balance + amount)
        case Withdrawn(amount): return replace(state, balance=state.balance - amount)
    raise TypeError(f"not an account event: {event!r}")


account = Aggregate("account", Account(), decide, evolve,
                    events={"Deposited": Deposited, "Withdrawn": Withdrawn})


async def main(directory: str) -> None:
    async with FileJournal(directory) as journal, Runtime(journal) as runtime:
        result = await runtime.ask(account, "42", Deposit(100))   # durable when it returns
        print(result.version, result.events)                     # 1 (Deposited(amount=100),)
        try:
            await runtime.ask(account, "42", Withdraw(500))
        except CommandRejected as rejection:
            print(rejection.reason)                              # insufficient funds
        print(await runtime.state(account, "42"))                # Account(balance=100)

if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, directory + "/journal")
