"""The keeper of a ``Runtime``'s own tasks: it opens and closes a journal the runtime owns,
and hosts the outbox's deliverer, the snapshot writer, the keeper of callers' deadlines, the
sampler of the rate of commands, the idle sweeper, told commands and abandoned appends being
settled, shielded from a cancellation of the scope around ``async with``.

The layer of ``Runtime`` between the told commands and its public calls: the runtime's
lifecycle (``__aenter__``, ``__aexit__``) starts the keeper and ends it; kept here so that the
runtime's module holds its lifecycle and public calls.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus

from journals import JournalClosed

from ._rate import sample_commands
from ._told import Teller, stopped


class Keeper(Teller):
    """The runtime's own tasks (see the module's docstring)."""

    _owns_journal: bool
    _owned_journal_open: bool  # From the keeper's open to its close.
    _keeper_scope: anyio.CancelScope | None
    _passivate_after_s: float | None
    _workers_done: list[anyio.Event]

    async def _keep(self, outbox: Any, snapshots: Any, *, task_status: TaskStatus[None]) -> None:
        """Host the runtime's own tasks and an owned journal, shielded from outer cancellation.

        Cancelling the scope around ``async with Runtime(...)`` (``move_on_after``, a signal
        handler) cancels the body and the callers, not the outbox's deliverer, the snapshot
        writer, the keeper of deadlines, the sampler of the rate of commands, told commands,
        abandoned appends being settled or an owned journal's committer: ``__aexit__`` still
        waits for them up to ``shutdown_timeout_s`` and then ends the tasks by cancelling the
        keeper's scope; the journal, opened here before them, is closed here after them (an
        error opening it ends the keeper before ``started()``, so ``start`` raises it). A
        failure of one of the tasks still ends them all and cancels the body (it propagates
        to the outer task group), once the journal is closed.
        """
        # Invariant: nothing cancels this scope (``__aexit__`` cancels the keeper's scope,
        # inside it), so an owned journal is always flushed and closed here.
        with anyio.CancelScope(shield=True):
            if self._owns_journal:
                # Opened in this task, since its task group must be left in the task that
                # entered it: its committer then lives under this shield, not in the scope
                # around ``async with``.
                await self._journal.__aenter__()
                self._owned_journal_open = True
            else:
                await self._check_journal_open()
            try:
                await self._run_tasks(outbox, snapshots, task_status)
            finally:
                if self._owns_journal:
                    # After the tasks, whatever ended them: what they appended is flushed.
                    self._owned_journal_open = False
                    await self._journal.aclose()

    async def _check_journal_open(self) -> None:
        """Refuse to start on a journal the caller has not opened (or has closed), rather than
        fail the first command with an error about reads."""
        try:
            await self._journal.head_position()
        except JournalClosed:
            # The journal's API does not say whether it was never entered or closed already;
            # the second cannot be entered again, so the message covers both.
            raise JournalClosed(
                "the runtime's journal is not open: enter it first ('async with "
                "FileJournal(path) as journal:', then 'async with Runtime(journal)'), or pass "
                "Runtime(journal, owns_journal=True) to have the runtime open and close it. A "
                "journal closed already cannot be entered again: make a new one "
                "(FileJournal(path) on the same path reopens what it holds)"
            ) from None

    async def _run_tasks(self, outbox: Any, snapshots: Any, task_status: TaskStatus[None]) -> None:
        """Run the runtime's own tasks until ``__aexit__`` cancels them or one of them fails."""
        try:
            with anyio.CancelScope() as scope:
                self._keeper_scope = scope
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    task_group.start_soon(self._deliver_outbox, outbox, self._workers_done[0])
                    task_group.start_soon(self._write_snapshots, snapshots, self._workers_done[1])
                    task_group.start_soon(self._deadlines.expire, self._parking)
                    task_group.start_soon(sample_commands, self)
                    if self._passivate_after_s is not None:
                        task_group.start_soon(self._sweep, self._passivate_after_s)
                    task_status.started()
        except BaseExceptionGroup as group:
            # One of them failed (a KeyboardInterrupt in a told command, say): it comes out
            # of ``async with`` in one group, the outer task group's, as it would without
            # this keeper, not in a group nested in it.
            if len(group.exceptions) != 1:
                raise
            raise group.exceptions[0] from None
        finally:
            # No task may be started any more: tell and tell_nowait raise RuntimeClosed, and
            # a cancelled caller's abandoned append is settled without one.
            self._task_group = None
            if self._accepting:  # Not shutting down: one of the tasks failed.
                self._refusal = str(stopped())
            self._accepting = False
