"""What leaving a Runtime's ``async with`` lets through: the body's exception as itself.

The runtime's own tasks run in a task group that ``__aexit__`` leaves; they do not fail, so
an exception group out of it holds only what the body of ``async with`` raised, which then
propagates unchanged, as it would without the runtime.
"""

from __future__ import annotations


def only_the_bodys(group: BaseExceptionGroup[BaseException], error: BaseException) -> bool:
    """Whether every exception in ``group`` (nested groups included) is ``error``, the body's
    exception, or one of its members when that is a group (the body's own task group raises
    one): a task group may rebuild a group that passes through it (trio takes its
    cancellations out), so members are compared, not groups."""
    return _members(group) <= _members(error)


def _members(error: BaseException) -> set[int]:
    if isinstance(error, BaseExceptionGroup):
        return set().union(*map(_members, error.exceptions))
    return {id(error)}
