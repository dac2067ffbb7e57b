"""A journal that another process keeps open and writes, for the tools to read meanwhile.

``LiveJournal`` runs this module as a child process: ``python -m tests.live_journal_child
DIRECTORY SEGMENT_BYTES_MAX [KEY_HEX]``. The child opens a FileJournal there, reads one command
a line from standard input and answers one line once it is done:

* ``append N``: append one event with N bytes of padding, durably; ``appended P`` (its position).
* ``hold N``: append such an event and hold its batch once its bytes are written, before
  their fdatasync returns; ``held H``, H being the position of the last durable event.
* ``tear N K``: append such an event and hold the K-th write from then (0: the batch's; a
  batch that opens a segment first writes the sealed segment's index file, then the new
  segment's header) once half its bytes are written; ``torn H``.
* ``tear-snapshot``: save a snapshot of the stream at its version, held once half its record
  is written; ``torn H``.
* ``release``: let what is held go on and wait for it; ``appended P`` (the last position).

End of input closes the journal (cleanly: it releases what is held first) and ends the process.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread

from journals import FileJournal, NewEvent
from journals.testing import FileIO

STREAM = "account-42"
ROOT = Path(__file__).resolve().parent.parent


class HeldFileIO(FileIO):
    """Holds a write when told: before its fdatasync, or halfway through it."""

    def __init__(self) -> None:
        self.mode: str | None = None  # "hold", or "tear": what a later write does.
        self.writes_before_tear = 0
        self.reached = threading.Event()
        self.released = threading.Event()

    def _wait(self) -> None:
        self.mode = None
        self.reached.set()
        self.released.wait()

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.mode == "tear" and self.writes_before_tear:
            self.writes_before_tear -= 1
        elif self.mode == "tear":
            written = super().pwrite(fd, memoryview(data)[: len(data) // 2], offset)
            self._wait()
            return written
        return super().pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        if self.mode == "hold":
            self._wait()
        super().fdatasync(fd)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _serve(journal: FileJournal, file_io: HeldFileIO) -> None:
    held_done = anyio.Event()
    held_done.set()

    async def append(pad: int, done: anyio.Event | None = None) -> int:
        event = NewEvent("Deposited", {"amount": 1, "pad": "x" * pad})
        result = await journal.append(STREAM, [event], expected_version=None)
        if done is not None:
            done.set()
        return result.position

    async def snapshot(done: anyio.Event) -> None:
        version = await journal.stream_version(STREAM)
        await journal.save_snapshot(STREAM, version, {"balance": version})
        done.set()

    async with anyio.create_task_group() as group:
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command, *arguments = line.split()
            if command == "append":
                _say(f"appended {await append(int(arguments[0]))}")
            elif command == "release":
                file_io.released.set()
                await held_done.wait()
                _say(f"appended {await journal.head_position()}")
            else:
                head = await journal.head_position()
                held_done = anyio.Event()
                file_io.reached.clear()
                file_io.released.clear()
                if command == "hold":
                    file_io.mode = "hold"
                    group.start_soon(append, int(arguments[0]), held_done)
                elif command == "tear":
                    file_io.mode, file_io.writes_before_tear = "tear", int(arguments[1])
                    group.start_soon(append, int(arguments[0]), held_done)
                else:
                    assert command == "tear-snapshot", line
                    file_io.mode, file_io.writes_before_tear = "tear", 0
                    group.start_soon(snapshot, held_done)
                await anyio.to_thread.run_sync(file_io.reached.wait)
                _say(f"{'held' if command == 'hold' else 'torn'} {head}")
        file_io.released.set()


async def main(directory: str, segment_bytes_max: int, key: bytes | None) -> None:
    file_io = HeldFileIO()
    async with FileJournal(
        directory, file_io=file_io, segment_bytes_max=segment_bytes_max, key=key
    ) as journal:
        await _serve(journal, file_io)


class LiveJournal:
    """The child above, run by a test: ``with LiveJournal(directory) as live:`` then
    ``live.tell("hold 10")``; leaving the block closes the journal and waits for the child."""

    def __init__(
        self, directory: Path, segment_bytes_max: int = 4096, key: bytes | None = None
    ) -> None:
        arguments = [str(directory), str(segment_bytes_max)]
        if key is not None:
            arguments.append(key.hex())
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tests.live_journal_child", *arguments],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def tell(self, command: str) -> int:
        """Send ``command``; answer the number in the child's answer."""
        assert self._child.stdin is not None
        assert self._child.stdout is not None
        self._child.stdin.write(command + "\n")
        self._child.stdin.flush()
        answer = self._child.stdout.readline()
        assert answer, f"the child ended at {command!r}"
        return int(answer.split()[1])

    def close(self) -> None:
        """Close the journal (cleanly) and wait for the child to end."""
        self._child.communicate(timeout=60)
        assert self._child.returncode == 0

    def __enter__(self) -> LiveJournal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._child.returncode is None:
            if kind is None:
                self.close()
            else:
                self._child.kill()
                self._child.communicate()  # Closes the pipes too.


if __name__ == "__main__":
    anyio.run(
        main,
        sys.argv[1],
        int(sys.argv[2]),
        bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else None,
    )
