"""How the runtime's public calls type the aggregate they take: by what each call reads of it.

``Aggregate[S, C, E]`` is invariant in all three, as it must be: ``evolve`` takes states and
events, ``decide`` states and commands. But a type checker infers a call's type variables from
the type expected of its result too: in ``result: CommandResult[object] = await runtime.ask(
account, "42", Deposit(5))`` that pins ``E`` to ``object``, and an ``Aggregate[S, C, E]``
parameter would then refuse an ``Aggregate[Account, Command, Deposited | Withdrawn]``.

So a call that answers with the aggregate's states or events types its aggregate by a Protocol
that ``Aggregate`` satisfies structurally, holding only what the call reads, each type variable
with the variance of that use. What is unsound stays refused: a command ``decide`` does not
take, or a result narrower than the aggregate's states or events. Typing only: at run time the
calls take an ``Aggregate`` as before (``_stream_prefix`` keeps other classes out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

S_co = TypeVar("S_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)
E_co = TypeVar("E_co", covariant=True)


class StatesOf(Protocol[S_co]):
    """How ``state`` and ``state_at`` type their aggregate: by its states alone, covariantly.

    In ``print(await runtime.state(account, "42"))`` the expected type is ``object``.
    """

    @property
    def _stream_prefix(self) -> str: ...

    @property
    def initial(self) -> S_co: ...


class Decider(Protocol[C_contra, E_co]):
    """How ``ask`` types its aggregate: contravariantly in its commands, covariantly in its
    events, by ``decide`` alone (``ask`` answers with the events ``decide`` returned).

    An aggregate that decides commands of a type decides any command of a subtype, and its
    events are also of any wider type: ``CommandResult[object]`` or ``CommandResult[BaseEvent]``
    take the answer, while a command of another type is refused.
    """

    @property
    def _stream_prefix(self) -> str: ...

    @property
    def decide(self) -> Callable[[Any, C_contra], Sequence[E_co]]: ...
