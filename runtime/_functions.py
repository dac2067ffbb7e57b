"""Checks of the functions an ``Aggregate`` is given, made once when it is made.

The runtime calls ``decide``, ``evolve``, ``encode_state`` and ``decode_state`` synchronously,
between two awaits that fix the order of an entity's commands. An ``async def`` one would hand
back a coroutine that never runs: an ``evolve`` would make the state a coroutine object, and
every command after it be decided against that, without a word.
"""

from __future__ import annotations

import inspect


def check_function(aggregate: str, role: str, function: object) -> None:
    """Refuse what the runtime could not call as ``role`` of ``aggregate``, synchronously."""
    if not callable(function):
        raise TypeError(
            f"{role} of aggregate {aggregate!r} must be a function, not {function!r:.100} "
            f"(a {type(function).__name__}): Aggregate(name, initial, decide, evolve, events=...)"
        )
    call = type(function).__call__  # an object whose __call__ is async counts too
    if (
        inspect.iscoroutinefunction(function)
        or inspect.isasyncgenfunction(function)
        or inspect.iscoroutinefunction(call)
    ):
        raise TypeError(
            f"{role} of aggregate {aggregate!r} must be a plain function, not the async "
            f"{function!r:.100}: the runtime calls it synchronously, so its coroutine would "
            f"never run. Write it with 'def'; do any I/O before the command is sent, and pass "
            f"what it found in the command"
        )
