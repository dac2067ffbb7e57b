"""Appends whose callers may go away: waiting for room, and settling an abandoned append.

``wait_until_placed`` waits for the journal to place an append that had to wait for room;
until then the append can be withdrawn, and the actor decides nothing more.

Settling an append whose caller stopped waiting (cancelled) while it was in flight: the
append took its place in the log before the caller went away, so it will commit or fail.
Until that is known the actor keeps the caller's mailbox slot, even if it breaks meanwhile: it
is not rebuilt while the events may still land, and the answers decided after them are not
given before they are durable. The engine starts ``settle_abandoned_append`` in the runtime's
task group for this. The caller's cancellation is its own: it is never handed to the answers
that depend on the append.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from journals import AppendOutcome, JournalClosed, JournalFailed, QueuedAppend, StartedAppend

from ._actor import Actor
from ._exceptions import ActorRuntimeError, RuntimeClosed

if TYPE_CHECKING:
    from ._engine import Engine

ABANDONED_APPEND_WAIT_S = 60.0
"""How long the outcome of an append made with ``Journal.append`` whose caller was cancelled is
looked for before the actor is rebuilt from the journal (a journal that fails makes the next
append fail much sooner). A started append's outcome is awaited itself, without a limit."""
_POLL_S = 0.001
_POLL_MAX_S = 0.05


async def wait_until_placed(
    engine: Engine, actor: Actor, queued: QueuedAppend, told: bool
) -> StartedAppend:
    """Wait until the journal places an append of ``actor`` that had to wait for room.

    Meanwhile the actor decides nothing more (its callers wait as for an activation), so no
    command is decided against events that may yet be taken back: a caller that goes away
    first withdraws its append (``QueuedAppend.withdraw``), and the actor is rebuilt from the
    journal (``Engine._append_refused``). Answers what ``Journal.start_append`` would have, or
    raises its refusal. ``told``: the command's caller has returned already (``tell``,
    ``tell_nowait``), so the append is no caller waiting.
    """
    held = actor.ready = engine._parking.event()
    caller = not told
    engine._appends_waiting_for_journal += 1
    engine._waiting_for_journal += caller
    try:
        await queued.wait()
    finally:
        engine._appends_waiting_for_journal -= 1
        engine._waiting_for_journal -= caller
        actor.ready = None
        held.set()
    return queued.started()


async def settle_abandoned_append(
    engine: Engine, actor: Actor, version0: int, version: int, outcome: AppendOutcome | None
) -> None:
    """Find out whether an abandoned append landed; hold its slot until then.

    ``outcome``: the append's outcome when it was started (placed for certain); None when it
    went through ``Journal.append``, whose outcome is lost with its caller.
    """
    failure: BaseException | None = None
    try:
        if outcome is not None:
            # Placed for certain: its outcome comes, as that of every append placed with it;
            # the answers held behind it wait for it the same way.
            await outcome.wait()
            try:
                outcome.raise_error()
            except Exception as error:
                failure = error
        else:
            failure = await _poll(engine, actor, version)
        if failure is not None:
            engine._fail_from(actor, version0, failure)
        elif version > actor.durable:
            actor.durable = version
            if version >= actor.version:
                actor.last_outcome = None
    except BaseException:
        # Cancelled with the runtime's tasks (a shutdown past its bound): the outcome stays
        # unknown, and the answers held behind the append must not wait for it forever.
        engine._fail_from(actor, version0, _unknown_after_shutdown(actor))
        raise
    finally:
        engine._release(actor)


async def _poll(engine: Engine, actor: Actor, version: int) -> BaseException | None:
    """Wait until the journal's durable version of the stream reaches ``version``.

    Answers the failure to report, or None once it is durable.
    """
    deadline = anyio.current_time() + ABANDONED_APPEND_WAIT_S
    delay = _POLL_S
    while actor.durable < version:
        try:
            if await engine._journal.stream_version(actor.stream_id) >= version:
                return None
        except Exception as error:  # A failed or closed journal: the outcome is lost.
            return error
        if isinstance(actor.broken, JournalFailed | JournalClosed):
            # The journal stopped committing (fail-stop); appends commit in order, so one
            # not durable by now never will be.
            return actor.broken
        if anyio.current_time() >= deadline:
            return ActorRuntimeError(
                f"the events of a cancelled command of {actor.stream_id!r} were not durable "
                f"after {ABANDONED_APPEND_WAIT_S} s, so its outcome is unknown and this answer "
                f"depended on it. The entity is rebuilt from the journal; check its state and "
                f"retry"
            )
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)
    return None


def abandoned_after_shutdown(engine: Engine, actor: Actor, version0: int) -> None:
    """A caller cancelled once the runtime has shut down: nothing is left to learn the outcome."""
    engine._fail_from(actor, version0, _unknown_after_shutdown(actor))
    engine._release(actor)


def _unknown_after_shutdown(actor: Actor) -> RuntimeClosed:
    return RuntimeClosed(
        f"the runtime shut down before the events of an earlier command of "
        f"{actor.stream_id!r} were known to be durable, so this answer, which depended on "
        f"them, is unknown; check the entity's state once the runtime runs again"
    )
