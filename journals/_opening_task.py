"""The task that opened a journal is the one that closes it.

A journal's committer runs in a task group that ``__aenter__`` enters and ``aclose`` leaves.
Structured concurrency lets only the task that entered a task group leave it: left from
another task, anyio raises a ``RuntimeError`` about cancel scopes on asyncio (and the task
that opened the journal fails later with another), and trio's own state is corrupted (the run
hangs or ends in ``TrioInternalError``). So ``aclose`` checks first, before it changes
anything, and refuses a call from another task with ``JournalOpenedInAnotherTask``: the
journal stays open, and the task that opened it can still close it as it should.

A journal's opening task is recorded when the opening begins (a FileJournal's opening takes a
while: recovery runs in a worker thread; a MemoryJournal's lasts while its committer starts):
a close from another task meanwhile is refused too, and the opening goes on. Let through, it
would mark the journal closed under the opening, which then left the committer's task group
open in a journal that no call could close any more (a MemoryJournal's refused every append).

The check costs one look-up of the current task per open and per close, nothing per append.
A task's id cannot be taken by another task while the journal is open: the journal's task
group keeps the task that entered it alive.
"""

from __future__ import annotations

from anyio import TaskInfo, get_current_task

from ._exceptions import JournalOpenedInAnotherTask


def opening_task() -> TaskInfo:
    """The task that opens the journal now: only it may close the journal."""
    return get_current_task()


def check_closing_task(opened_in: TaskInfo | None, journal: str, *, opening: bool = False) -> None:
    """Refuse to close, from another task, a journal that ``opened_in`` opened, or is opening
    (``opening``: it is still inside ``__aenter__``).

    ``None`` (not open: never opened, opening failed, or closed already) passes.
    """
    if opened_in is None:
        return
    closing_in = get_current_task()
    if closing_in.id != opened_in.id:
        raise JournalOpenedInAnotherTask(journal, opened_in, closing_in, opening=opening)
