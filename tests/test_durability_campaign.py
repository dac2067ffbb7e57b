"""A short crash campaign in the suite; the long one is ``python -m benchmarks.crash_campaign``.

The checks of the campaign are tested too: a checker that cannot fail proves nothing.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from benchmarks.crash_campaign import (
    Intent,
    Post,
    Tally,
    check_journal,
    ledger,
    parse_lines,
    run_campaign,
)
from journals import FileJournal
from runtime import Runtime


@pytest.mark.slow
def test_short_campaign_finds_no_violation(tmp_path: Path) -> None:
    tally = run_campaign(4, seed=5, kills_per_journal=2, work_directory=tmp_path, quiet=True)
    assert tally.violations == []
    assert tally.kills == 4
    assert tally.acknowledged_checked > 0
    assert tally.events_checked >= tally.acknowledged_checked


@pytest.mark.slow
def test_short_keyed_campaign_finds_no_violation(tmp_path: Path) -> None:
    tally = run_campaign(
        2, seed=6, kills_per_journal=2, work_directory=tmp_path, quiet=True, keyed=True
    )
    assert tally.violations == []
    assert tally.acknowledged_checked > 0


def test_parse_ignores_a_line_the_child_did_not_finish() -> None:
    intents: dict[int, Intent] = {}
    acks = parse_lines(b"R\nI 1 e1 5,6\nA 1 2 2\nI 2 e2 7\nA 2 1", intents)
    assert acks == 1
    assert intents[1] == Intent("e1", (5, 6), ack=(2, 2))
    assert intents[2] == Intent("e2", (7,), ack=None)


Command = tuple[int, str, tuple[int, ...]]


def _write(directory: Path, commands: list[Command]) -> None:
    anyio.run(_write_async, directory, commands)


async def _write_async(directory: Path, commands: list[Command]) -> None:
    async with FileJournal(directory) as journal, Runtime(journal) as runtime:
        for op, entity, amounts in commands:
            await runtime.ask(ledger, entity, Post(op, amounts))


def _check(directory: Path, intents: dict[int, Intent]) -> list[str]:
    tally = Tally()
    anyio.run(check_journal, directory, intents, tally)
    return tally.violations


def test_checker_accepts_acknowledged_and_whole_unacknowledged_commands(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "e1", (5, 6)), (2, "e1", (7,)), (3, "e2", (1, 2, 3))])
    intents = {
        1: Intent("e1", (5, 6), ack=(2, 2)),
        2: Intent("e1", (7,), ack=(3, 3)),
        3: Intent("e2", (1, 2, 3)),  # reached the disk, its answer was lost with the child
        4: Intent("e3", (9,)),  # never reached the disk
    }
    assert _check(tmp_path, intents) == []


def test_checker_reports_a_lost_acknowledged_command(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "e1", (5,))])
    intents = {1: Intent("e1", (5,), ack=(1, 1)), 2: Intent("e1", (4,), ack=(2, 2))}
    assert _check(tmp_path, intents) == ["acknowledged op 2 (e1) is lost"]


def test_checker_reports_a_wrong_acknowledgement_and_state(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "e1", (5, 6))])
    violations = _check(tmp_path, {1: Intent("e1", (5, 7), ack=(2, 3))})
    assert any("acknowledged at (version, position) (2, 3)" in v for v in violations)
    assert any("not whole" in v for v in violations)
    assert any(v.startswith("e1: rebuilt") for v in violations)


def test_checker_reports_a_command_never_asked(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "e1", (5,)), (2, "e1", (6,))])
    violations = _check(tmp_path, {1: Intent("e1", (5,), ack=(1, 1))})
    assert "op 2 is in the journal but was never asked" in violations


def test_checker_reports_a_damaged_file(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "e1", (5,)), (2, "e1", (6,))])
    segment = tmp_path / "00000000000000000001.log"
    data = bytearray(segment.read_bytes())
    data[80] ^= 0xFF  # inside the first event record, with a valid batch after it
    segment.write_bytes(bytes(data))
    violations = _check(tmp_path, {1: Intent("e1", (5,), ack=(1, 1))})
    assert len(violations) == 1
    assert violations[0].startswith("the journal refuses to open")
    assert "00000000000000000001.log at byte offset 64" in violations[0]
