"""Child process of the crash test: append forever, print each acknowledged append.

Usage: python -m tests.crash_child DIRECTORY TASKS. Each acknowledged append prints one line
``stream version position value``; the parent kills this process with SIGKILL at a random
moment and checks that every printed append survived.
"""

from __future__ import annotations

import sys

import anyio

from journals import FileJournal, NewEvent


async def _appender(journal: FileJournal, task: int) -> None:
    stream = f"crash-{task}"
    value = 0
    while True:
        value += 1
        result = await journal.append(
            stream, [NewEvent("Tick", {"value": value, "pad": "c" * 80})], expected_version=None
        )
        sys.stdout.write(f"{stream} {result.version} {result.position} {value}\n")
        sys.stdout.flush()


async def main(directory: str, tasks: int) -> None:
    async with FileJournal(directory, segment_bytes_max=64 * 1024) as journal:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        async with anyio.create_task_group() as group:
            for task in range(tasks):
                group.start_soon(_appender, journal, task)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
