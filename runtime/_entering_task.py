"""The task that enters a Runtime is the one that leaves it.

The runtime's own tasks (and an owned journal's committer) run in a task group that
``__aenter__`` enters and ``__aexit__`` leaves. Structured concurrency lets only the task
that entered a task group leave it: left from another task, anyio raises a ``RuntimeError``
about cancel scopes on asyncio, and trio's own state is corrupted (the run ends in
``TrioInternalError``). So ``__aexit__`` checks first, before it changes anything, and
refuses a call from another task with ``RuntimeEnteredInAnotherTask``: the runtime keeps
running, and the task that entered it can still shut it down as it should.

The check costs one look-up of the current task per start and per shutdown, nothing per
command. A task's id cannot be taken by another task while the runtime runs: its task group
keeps the task that entered it alive.
"""

from __future__ import annotations

from anyio import TaskInfo, get_current_task

from ._exceptions import RuntimeEnteredInAnotherTask


def entering_task() -> TaskInfo:
    """The task that enters the runtime now: only it may leave the runtime."""
    return get_current_task()


def check_leaving_task(entered_in: TaskInfo | None) -> None:
    """Refuse to leave, from another task, a runtime that ``entered_in`` entered."""
    if entered_in is None:
        return
    leaving_in = get_current_task()
    if leaving_in.id != entered_in.id:
        raise RuntimeEnteredInAnotherTask(entered_in, leaving_in)
