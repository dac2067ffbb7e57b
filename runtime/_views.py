"""How the runtime's public calls type the aggregate they take: by what each call reads of it.

``Aggregate[S, C, E]`` is invariant in all three, as it must be: ``evolve`` takes states and
events, ``decide`` states and commands. But a type checker infers a call's type variables from
the type expected of its result too: in ``shown: object = await runtime.state(account, "42")``
that pins ``S`` to ``object``, and an ``Aggregate[S, C, E]`` parameter would then refuse an
``Aggregate[Account, Command, Event]``.

So a call that answers with the aggregate's states types its aggregate by a Protocol that
``Aggregate`` satisfies structurally, holding only what the call reads, each type variable
with the variance of that use. What is unsound stays refused: a result narrower than the
aggregate's states. Typing only: at run time the calls take an ``Aggregate`` as before
(``_stream_prefix`` keeps other classes out).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

S_co = TypeVar("S_co", covariant=True)


class StatesOf(Protocol[S_co]):
    """How ``state`` and ``state_at`` type their aggregate: by its states alone, covariantly.

    In ``print(await runtime.state(account, "42"))`` the expected type is ``object``.
    """

    @property
    def _stream_prefix(self) -> str: ...

    @property
    def initial(self) -> S_co: ...
