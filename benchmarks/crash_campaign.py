"""Crash campaign: kill a busy runtime with SIGKILL again and again, and check what survives.

    python -m benchmarks.crash_campaign --kills 1000 [--keyed]

A child process runs the actor runtime on a FileJournal with small segments (so they roll)
and snapshots every few events, under a mixed workload: many entities, commands of one to four
events, many concurrent callers. Before each command it tells the parent what it is about to
ask (an *intent* line) and after each answer what was acknowledged (an *ack* line), over a
pipe. The parent kills it at a random moment (sometimes while it is still opening and
recovering the journal), reopens the journal and checks:

* the journal opens (a torn tail is cut) and ``verify_journal`` then finds it intact, hash
  chain included;
* every acknowledged command's events are present exactly once, with the acknowledged version
  and position; global positions and every stream's versions are gapless;
* every command in the journal is one the child intended, and is there whole, contiguous and
  in order (no partial multi-event append), and no command appears twice;
* each entity's state, rebuilt by a fresh runtime (snapshot plus tail), equals the model's
  state folded from the intended commands in journal order (acknowledged commands, plus
  possibly whole unacknowledged ones that reached the disk before the kill).

The same journal is reopened and written again for ``--kills-per-journal`` kills, so recovery
runs on journals that were themselves recovered; then a fresh directory starts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from benchmarks._arguments import positive_int
from journals import FileJournal, JournalCorrupted, verify_journal
from runtime import Aggregate, Runtime

SEGMENT_BYTES_MAX = 16 * 1024
SNAPSHOT_EVERY = 7
ENTITIES = 300
CALLERS = 128

# -- the workload's aggregate (the child writes with it, the parent rebuilds with it) ----------


@dataclass(frozen=True)
class Post:
    op: int
    amounts: tuple[int, ...]


@dataclass(frozen=True)
class Posted:
    op: int
    index: int
    count: int
    amount: int


@dataclass(frozen=True)
class Ledger:
    events: int = 0
    total: int = 0
    digest: int = 0
    last_op: int = 0


def decide(state: Ledger, command: Post) -> list[Posted]:
    count = len(command.amounts)
    return [Posted(command.op, i, count, amount) for i, amount in enumerate(command.amounts)]


def evolve(state: Ledger, event: Posted) -> Ledger:
    # The digest depends on the order of events, so a reordered or duplicated event shows.
    digest = (state.digest * 1_000_003 + event.op * 7919 + event.amount) % (2**61 - 1)
    return Ledger(state.events + 1, state.total + event.amount, digest, event.op)


ledger = Aggregate(
    "ledger", Ledger(), decide, evolve, events={"Posted": Posted}, snapshot_every=SNAPSHOT_EVERY
)


def entity_name(number: int) -> str:
    return f"e{number}"


# -- the child ---------------------------------------------------------------------------------


def _emit(line: str) -> None:
    # One write per line: a pipe write of fewer than PIPE_BUF bytes is atomic, so the parent
    # never sees half a line from a killed child, except for a line that was never written.
    os.write(1, line.encode())


async def _caller(runtime: Runtime, rng: random.Random, next_op: list[int]) -> None:
    while True:
        op = next_op[0]
        next_op[0] += 1
        entity = entity_name(rng.randrange(ENTITIES))
        amounts = tuple(rng.randint(1, 1000) for _ in range(rng.choice((1, 1, 2, 3, 4))))
        _emit(f"I {op} {entity} {','.join(map(str, amounts))}\n")
        result = await runtime.ask(ledger, entity, Post(op, amounts))
        _emit(f"A {op} {result.version} {result.position}\n")


KEY_VARIABLE = "EVENTFOLD_CAMPAIGN_KEY"
"""The child reads the chain's secret key (hex) from this environment variable, if set."""


async def child_main(directory: str, first_op: int, seed: int) -> None:
    rng = random.Random(seed)
    next_op = [first_op]
    key_hex = os.environ.get(KEY_VARIABLE)
    key = bytes.fromhex(key_hex) if key_hex else None
    async with (
        FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal,
        Runtime(journal, max_live_actors=ENTITIES // 3) as runtime,
    ):
        _emit("R\n")
        async with anyio.create_task_group() as group:
            for _ in range(CALLERS):
                group.start_soon(_caller, runtime, random.Random(rng.random()), next_op)


# -- the parent's bookkeeping and checks -------------------------------------------------------


@dataclass
class Intent:
    entity: str
    amounts: tuple[int, ...]
    ack: tuple[int, int] | None = None  # (version, position) once acknowledged


@dataclass
class Tally:
    iterations: int = 0
    kills: int = 0
    events_checked: int = 0
    acknowledged_checked: int = 0
    unacknowledged_found: int = 0
    torn_tails_cut: int = 0
    violations: list[str] = field(default_factory=list)


def parse_lines(output: bytes, intents: dict[int, Intent]) -> int:
    """Record the child's intent and ack lines; answer how many acks were read."""
    acks = 0
    for raw in output.split(b"\n")[:-1]:  # a last line without "\n" was never written whole
        parts = raw.decode().split()
        if parts[0] == "I":
            intents[int(parts[1])] = Intent(parts[2], tuple(map(int, parts[3].split(","))))
        elif parts[0] == "A":
            intents[int(parts[1])].ack = (int(parts[2]), int(parts[3]))
            acks += 1
    return acks


async def check_journal(
    directory: Path, intents: dict[int, Intent], tally: Tally, key: bytes | None = None
) -> None:
    """Reopen the journal and check it against the intents; record violations in ``tally``."""
    try:
        await _check_reopened(directory, intents, tally, key)
    except JournalCorrupted as error:
        tally.violations.append(f"the journal refuses to open: {error}")


async def _check_reopened(
    directory: Path, intents: dict[int, Intent], tally: Tally, key: bytes | None
) -> None:
    problems = tally.violations
    async with FileJournal(directory, segment_bytes_max=SEGMENT_BYTES_MAX, key=key) as journal:
        tally.torn_tails_cut += len(journal.recovery_report.torn_tails)
        seen_ops: dict[int, list[tuple[int, int, int, int, int]]] = {}
        versions: dict[str, int] = {}
        expected_position = 1
        async for event in journal.read_all():
            tally.events_checked += 1
            if event.position != expected_position:
                problems.append(f"position {event.position}, expected {expected_position}")
            expected_position = event.position + 1
            if event.version != versions.get(event.stream_id, 0) + 1:
                problems.append(f"{event.stream_id} version {event.version} out of sequence")
            versions[event.stream_id] = event.version
            data = event.data
            seen_ops.setdefault(data["op"], []).append(
                (event.position, event.version, data["index"], data["count"], data["amount"])
            )
            if event.stream_id != "ledger-" + intents.get(data["op"], Intent("?", ())).entity:
                problems.append(f"op {data['op']} at {event.position} in the wrong stream")
        models: dict[str, Ledger] = {}
        for op, events in seen_ops.items():
            intent = intents.get(op)
            if intent is None:
                problems.append(f"op {op} is in the journal but was never asked")
                continue
            _check_whole(op, intent, events, problems)
            state = models.get(intent.entity, Ledger())
            for _, _, index, count, _ in events:
                if index < len(intent.amounts):
                    state = evolve(state, Posted(op, index, count, intent.amounts[index]))
            models[intent.entity] = state
        for op, intent in intents.items():
            if intent.ack is None:
                tally.unacknowledged_found += op in seen_ops
                continue
            tally.acknowledged_checked += 1
            found = seen_ops.get(op)
            if not found:
                problems.append(f"acknowledged op {op} ({intent.entity}) is lost")
            elif (found[-1][1], found[-1][0]) != intent.ack:
                problems.append(
                    f"op {op} acknowledged at (version, position) {intent.ack}, "
                    f"found at {(found[-1][1], found[-1][0])}"
                )
        # Rebuild every entity with a fresh runtime (snapshot plus tail) and compare.
        async with Runtime(journal) as runtime:
            for entity, expected in models.items():
                rebuilt = await runtime.state(ledger, entity)
                if rebuilt != expected:
                    problems.append(f"{entity}: rebuilt {rebuilt}, model {expected}")
    report = verify_journal(directory, key=key)
    if report.problem is not None:
        problems.append(f"verify after reopening: {report.problem}")


def _check_whole(
    op: int, intent: Intent, events: list[tuple[int, int, int, int, int]], problems: list[str]
) -> None:
    count = len(intent.amounts)
    first_position, first_version = events[0][0], events[0][1]
    expected = [
        (first_position + i, first_version + i, i, count, intent.amounts[i]) for i in range(count)
    ]
    if events != expected:
        problems.append(f"op {op} is not whole, contiguous and once: {events} != {expected}")


# -- the parent's loop -------------------------------------------------------------------------


def _drain(stream: object, into: bytearray) -> None:
    read = stream.read1  # type: ignore[attr-defined]
    while chunk := read(65536):
        into.extend(chunk)


READY_TIMEOUT_S = 30.0
"""How long the parent waits for the child's ready line before it calls the child hung."""


def run_child_until_killed(
    directory: Path, first_op: int, seed: int, rng: random.Random, key: bytes | None = None
) -> tuple[bytes, int | None, bytes, bool]:
    """Start a child, kill it at a random moment; answer its output, exit code and stderr.

    The last answer is whether the parent waited ``READY_TIMEOUT_S`` for the child to be
    ready (opening and recovering the journal) in vain. Whatever interrupts the wait (Ctrl-C,
    an error), the child is killed and reaped before this returns or raises.
    """
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.crash_campaign",
                "--child",
                str(directory),
                str(first_op),
                str(seed),
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, KEY_VARIABLE: key.hex() if key else ""},
        )
        output = bytearray()
        reader = threading.Thread(target=_drain, args=(child.stdout, output))
        reader.start()
        not_ready = False
        try:
            if rng.random() < 0.2:
                # Sometimes kill early, while the child may still be opening and recovering.
                time.sleep(rng.uniform(0.0, 0.8))
            else:
                deadline = time.monotonic() + READY_TIMEOUT_S
                while not output.startswith(b"R\n") and child.poll() is None:
                    if time.monotonic() > deadline:
                        not_ready = True
                        break
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.5))
            code = child.poll()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            reader.join()
            assert child.stdout is not None
            child.stdout.close()
        errors.seek(0)
        return bytes(output), code, errors.read(), not_ready


def run_campaign(
    kills: int,
    *,
    seed: int,
    kills_per_journal: int,
    work_directory: Path,
    quiet: bool = False,
    keyed: bool = False,
) -> Tally:
    """Deliver ``kills`` SIGKILLs and check after each; ``keyed`` chains with a secret key."""
    rng = random.Random(seed)
    key = rng.randbytes(32) if keyed else None
    tally = Tally()
    directory = work_directory / "journal"
    intents: dict[int, Intent] = {}
    next_op = 1
    started = time.monotonic()
    violated = False
    while tally.kills < kills:
        if tally.kills % kills_per_journal == 0 or violated:
            # A fresh journal after a violation too: a journal that refuses to open stays so.
            # Only after the kill that found it: the kills after it go on reopening journals.
            shutil.rmtree(directory, ignore_errors=True)
            intents = {}
        tally.iterations += 1
        before = len(tally.violations)
        output, code, errors, not_ready = run_child_until_killed(
            directory, next_op, rng.randrange(2**32), rng, key
        )
        if code is not None:
            tally.violations.append(f"child exited by itself ({code}): {errors.decode()[-500:]}")
        if not_ready:
            # Killed anyway, the child leaves a journal to check, but a recovery that hangs is
            # a failure the checks below cannot see.
            tally.violations.append(
                f"child not ready {READY_TIMEOUT_S:g} s after it started: opening and "
                "recovering the journal hung or crawled"
            )
        tally.kills += 1
        parse_lines(output, intents)
        next_op = max(intents, default=next_op) + 1_000
        anyio.run(check_journal, directory, intents, tally, key)
        violated = len(tally.violations) > before
        if violated and not quiet:
            print(f"kill {tally.kills}: {tally.violations[before:][:5]}", flush=True)
        if not quiet and tally.kills % 50 == 0:
            print(
                f"... {tally.kills} kills, {tally.events_checked} events checked, "
                f"{len(tally.violations)} violations, {time.monotonic() - started:.0f} s",
                flush=True,
            )
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kills", type=positive_int, default=100, help="how many SIGKILLs to deliver"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument(
        "--kills-per-journal", type=positive_int, default=10, help="kills before a fresh journal"
    )
    parser.add_argument(
        "--keyed", action="store_true", help="chain with a secret key (BLAKE2b keyed mode)"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("DIRECTORY", "FIRST_OP", "SEED"), help=argparse.SUPPRESS
    )
    arguments = parser.parse_args(argv)
    if arguments.child:
        directory, first_op, child_seed = arguments.child
        anyio.run(child_main, directory, int(first_op), int(child_seed))
        return 0
    seed = arguments.seed if arguments.seed is not None else random.randrange(2**32)
    keyed = " keyed" if arguments.keyed else ""
    print(f"crash campaign{keyed}: {arguments.kills} kills, seed {seed}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="eventfold-crash-") as work:
        tally = run_campaign(
            arguments.kills,
            seed=seed,
            kills_per_journal=arguments.kills_per_journal,
            work_directory=Path(work),
            keyed=arguments.keyed,
        )
    elapsed = time.monotonic() - started
    print(
        f"iterations {tally.iterations}, kills {tally.kills}, "
        f"events checked {tally.events_checked}, "
        f"acknowledged commands checked {tally.acknowledged_checked}, "
        f"unacknowledged whole commands found {tally.unacknowledged_found}, "
        f"torn tails cut {tally.torn_tails_cut}, "
        f"violations {len(tally.violations)}, {elapsed:.0f} s"
    )
    for violation in tally.violations[:20]:
        print(f"violation: {violation}")
    if tally.acknowledged_checked == 0:
        # No violation then proves nothing: a child that hangs before its first answer, or
        # kills that all came before one, leave only intents, which the checks accept.
        print(
            f"nothing checked: no command was acknowledged in {tally.kills} kills "
            "(give more kills, or find why the child never answers)"
        )
        return 1
    return 1 if tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
