"""``tell_nowait`` belongs to the event loop's thread: from another one it is refused.

The outbox and the actors are the event loop's. Called from a worker thread, ``tell_nowait``
used to queue the command without waking the outbox's deliverer (asyncio: the command waited
for whatever woke the loop next) or to fail half-way and leave the deliverer parked for good
(trio: every later ``tell_nowait`` command was lost at shutdown).
"""

from __future__ import annotations

import threading

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from journals import MemoryJournal
from runtime import Runtime

from .test_runtime_bank import Account, Deposit, Open, account


@pytest.mark.anyio
async def test_tell_nowait_from_another_thread_is_refused_and_the_outbox_still_delivers() -> None:
    async with MemoryJournal() as journal, Runtime(journal) as runtime:
        await runtime.ask(account, "42", Open("ada"))
        errors: list[BaseException] = []

        def from_a_plain_thread() -> None:
            try:
                runtime.tell_nowait(account, "42", Deposit(1))
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=from_a_plain_thread)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        assert len(errors) == 1
        assert isinstance(errors[0], RuntimeError)
        assert "from a thread other than the runtime's event loop" in str(errors[0])
        assert "anyio.from_thread.run_sync(runtime.tell_nowait" in str(errors[0])

        # The way from a worker thread, and the outbox delivers what comes after.
        await anyio.to_thread.run_sync(
            anyio.from_thread.run_sync, runtime.tell_nowait, account, "42", Deposit(2)
        )
        runtime.tell_nowait(account, "42", Deposit(3))
        await anyio.wait_all_tasks_blocked()
        assert runtime.statistics().commands == 3
        assert await runtime.state(account, "42") == Account("ada", 5, 2)
