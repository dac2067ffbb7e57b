"""Told commands: ``tell``'s task per command and the outbox ``tell_nowait`` queues into.

The layer of ``Runtime`` between the engine and its public calls: the runtime sets these
attributes and starts ``_deliver_outbox``; kept here so that the runtime's module holds its
lifecycle and public calls. A told command's outcome
goes to the log and the counters, never to its sender; shutdown reports the told commands
whose fate it leaves open.

Invariant: ``_outbox_queued`` counts the commands ``tell_nowait`` accepted whose delivery has
not ended (in the outbox, handed to the deliverer, or being accepted by their entity); each
leaves it once delivered, or once refused at delivery or given up by shutdown, both counted
in ``outbox_undelivered``. A command leaves it as delivered in its own task, as its entity
accepts it (with no yield before ``started()``), not when the deliverer resumes: shutdown
may give up between the two, and must not count as undelivered a command that runs.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus

from journals import STREAM_ID_BYTES_MAX, InvalidStreamId, JournalFailed

from ._actor import logger
from ._aggregate import Aggregate
from ._engine import Engine
from ._exceptions import CommandRejected, EntityStopped, RuntimeClosed
from ._repeats import IN_THE_NEXT_MINUTE, since_last


class Teller(Engine):
    """The told commands of a ``Runtime`` (see the module's docstring)."""

    _shutdown_timeout_s: float
    _outbox_queued: int  # See the invariant in the module's docstring.
    _told_in_flight: int  # Told commands accepted and not finished.
    _outbox_given_up = False  # Set once shutdown has counted what the outbox did not deliver.

    async def _run_told(
        self,
        aggregate: Aggregate[Any, Any, Any],
        entity_id: str,
        command: Any,
        timeout_s: float | None,
        queued: bool = False,
        *,
        task_status: TaskStatus[None],
    ) -> None:
        stream_id = aggregate._stream_prefix + entity_id
        # A refusal is counted by tell once it reaches its caller (Engine._refused), or
        # by the outbox's deliverer.
        actor = await self._admit(aggregate, stream_id, timeout_s, queued)
        if queued and not self._outbox_given_up:
            self._outbox_queued -= 1  # Delivered (see the invariant in the module's docstring).
        # started() does not yield: the command is decided and placed in the log before the
        # teller resumes, so commands told one after another keep their order.
        task_status.started()
        self._told_in_flight += 1
        try:
            await self._execute(aggregate, actor.stream_id, command, timeout_s, actor, True)
        except CommandRejected as rejection:
            logger.debug("told command to %r rejected: %s", actor.stream_id, rejection)
        except Exception as error:
            self._log_told_failure("told command to %r failed", aggregate, actor.stream_id, error)
        finally:
            self._told_in_flight -= 1

    async def _deliver_outbox(self, receive: Any, done: anyio.Event) -> None:
        try:
            async with receive:
                async for aggregate, entity_id, command in receive:
                    stream_id = aggregate.stream_id(entity_id)
                    try:
                        await self._tell_internal(aggregate, entity_id, command)
                    except Exception as error:
                        if self._outbox_given_up:
                            # Refused as shutdown ended (RuntimeClosed, woken waiting for
                            # room): shutdown has counted and logged it already.
                            return
                        # Not accepted (stopped entity, failed activation, ...): like a told
                        # command's outcome, counted and logged, never raised in the runtime.
                        self._counters.outbox_undelivered += 1
                        if isinstance(error, EntityStopped):
                            self._counters.entity_stopped_refusals += 1
                        self._outbox_queued -= 1
                        self._log_told_failure(
                            "queued command for %r not delivered", aggregate, stream_id, error
                        )
                    # Delivered, it left _outbox_queued in its own task (_run_told). Not when
                    # cancelled: the command is then counted undelivered at shutdown.
        finally:
            done.set()

    def _log_told_failure(
        self, what: str, aggregate: Aggregate[Any, Any, Any], stream_id: str, error: Exception
    ) -> None:
        """Log how a told command failed (``what`` says so, with a ``%r`` for its stream):
        with its traceback once a minute for its aggregate, its place and its class of
        exception, and at debug level otherwise (see ``_repeats``); a failed journal, which
        fails every later command, at error level."""
        since = self._repeats.due(f"{what} of {aggregate.name}", error)
        if since is None:
            logger.debug(what + ": %s: %.300s", stream_id, type(error).__name__, error)
            return
        later = (
            f"Later told commands of {aggregate.name!r} that fail with "
            f"{type(error).__name__} {IN_THE_NEXT_MINUTE} are logged at debug level, without "
            f"a traceback{since_last(since)}"
        )
        if isinstance(error, JournalFailed):
            logger.error(
                what + ": the journal failed and accepts no more appends (fail-stop), so "
                "every later command fails alike; fix the cause, then reopen the journal in a "
                "new runtime. %s (statistics().append_failures counts them).",
                stream_id,
                later,
                exc_info=error,
            )
            return
        logger.warning(
            what + ". %s; statistics() counts them (a crash in crashes, a failed append in "
            "append_failures, a queued command refused at delivery in outbox_undelivered).",
            stream_id,
            later,
            exc_info=error,
        )

    async def _tell_internal(self, aggregate: Any, entity_id: str, command: Any) -> None:
        task_group = self._task_group
        if task_group is None:
            raise stopped()
        await task_group.start(self._run_told, aggregate, entity_id, command, None, True)

    def _report_unwritten_snapshots(self) -> None:
        """Count and log the snapshots still queued when shutdown stops waiting: the writer
        is cancelled before it takes them (nothing yields between this and that)."""
        unwritten = self._snapshot_send.statistics().current_buffer_used
        if unwritten:
            self._counters.snapshots_skipped += unwritten
            logger.warning(
                "%d snapshot(s) were not written: the runtime shut down after waiting "
                "shutdown_timeout_s=%s s (statistics().snapshots_skipped counts them); no event is "
                "lost, their entities are rebuilt from an earlier snapshot or from their events",
                unwritten,
                self._shutdown_timeout_s,
            )

    def _report_undelivered(self) -> None:
        """Log the told commands whose fate shutdown leaves open, once it stops waiting."""
        if self._told_in_flight:
            logger.warning(
                "%d told command(s) were still in flight when the runtime stopped waiting "
                "(shutdown_timeout_s=%s s): their events, if any, were handed to the journal "
                "and are durable only if it commits them before it closes",
                self._told_in_flight,
                self._shutdown_timeout_s,
            )
        # The command the deliverer holds is among these: if it is refused now, it is not
        # counted again (_deliver_outbox).
        self._outbox_given_up = True
        undelivered = self._outbox_queued
        if undelivered:
            self._counters.outbox_undelivered += undelivered
            self._outbox_queued = 0
            logger.error(
                "%d command(s) accepted by tell_nowait were not delivered: the runtime shut "
                "down after waiting shutdown_timeout_s=%s s. They were not executed; raise "
                "shutdown_timeout_s, or send commands whose loss matters with ask",
                undelivered,
                self._shutdown_timeout_s,
            )


def stopped() -> RuntimeClosed:
    """The error of a told command refused because the runtime's tasks have ended."""
    return RuntimeClosed(
        "the runtime's tasks have ended (it is shutting down, or one of them failed); the "
        "command was not accepted"
    )


def refused_stream_id(stream_id: str) -> InvalidStreamId | None:
    """The refusal of a stream id no journal takes for its length or its encoding, which
    ``tell_nowait`` must give at the call: at delivery no one would see it."""
    if stream_id.isascii() and len(stream_id) <= STREAM_ID_BYTES_MAX:
        return None  # One byte per character: no need to encode it.
    try:
        size = len(stream_id.encode("utf-8"))
    except UnicodeEncodeError as error:
        return InvalidStreamId(f"stream id {stream_id!r:.300} is not valid UTF-8: {error.reason}")
    if size <= STREAM_ID_BYTES_MAX:
        return None
    return InvalidStreamId(
        f"stream id is {size} bytes long in UTF-8; the limit is {STREAM_ID_BYTES_MAX} (the "
        f"aggregate's name, '-' and the entity id); the command was not accepted"
    )


def other_thread() -> RuntimeError:
    # The outbox and the actors belong to the event loop: touched from another thread, the
    # outbox's deliverer is not woken (asyncio) or is lost for good (trio).
    return RuntimeError(
        "tell_nowait was called from a thread other than the runtime's event loop, and the "
        "command was not accepted; call it in the event loop's thread, from a worker thread "
        "with 'anyio.from_thread.run_sync(runtime.tell_nowait, aggregate, entity_id, command)'"
    )
