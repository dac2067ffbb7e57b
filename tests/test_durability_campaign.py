"""A short crash campaign in the suite; the long one is ``python -m benchmarks.crash_campaign``.

The checks of the campaign are tested too: a checker that cannot fail proves nothing.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import anyio
import pytest

import benchmarks.crash_campaign as campaign
from benchmarks.crash_campaign import (
    Intent,
    Post,
    Tally,
    check_journal,
    ledger,
    parse_lines,
    run_campaign,
    run_child_until_killed,
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


def _rng_that_waits_for_ready() -> random.Random:
    # The first draw decides between an early kill (below 0.2) and waiting for the ready line.
    seed = next(seed for seed in range(100) if random.Random(seed).random() >= 0.2)
    return random.Random(seed)


def test_a_child_that_is_never_ready_is_a_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recovery that hangs leaves a journal that checks clean: the wait itself must fail."""
    monkeypatch.setattr(campaign, "READY_TIMEOUT_S", 0.0)
    *_, not_ready = run_child_until_killed(tmp_path / "j", 1, 1, _rng_that_waits_for_ready())
    assert not_ready

    def hung(*arguments: object) -> tuple[bytes, None, bytes, bool]:
        return b"", None, b"", True

    monkeypatch.setattr(campaign, "run_child_until_killed", hung)
    tally = run_campaign(1, seed=1, kills_per_journal=1, work_directory=tmp_path, quiet=True)
    assert tally.violations == [
        "child not ready 0 s after it started: opening and recovering the journal hung or crawled"
    ]


def test_an_interrupted_wait_still_kills_and_reaps_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    children: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*arguments: object, **options: object) -> subprocess.Popen[bytes]:
        children.append(real_popen(*arguments, **options))  # type: ignore[call-overload]
        return children[-1]

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_child_until_killed(tmp_path / "j", 1, 1, random.Random(0))
    assert len(children) == 1
    assert children[0].returncode is not None  # killed and waited for, not left running


def test_a_campaign_in_which_nothing_was_acknowledged_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child that is ready but never answers leaves intents only: that is no pass."""

    def silent(*arguments: object) -> tuple[bytes, None, bytes, bool]:
        return b"R\nI 1 e1 5\n", None, b"", False

    monkeypatch.setattr(campaign, "run_child_until_killed", silent)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert campaign.main(["--kills", "2", "--seed", "1"]) == 1
    output = capsys.readouterr().out
    assert "violations 0" in output
    assert "nothing checked: no command was acknowledged in 2 kills" in output


def test_kills_after_a_violation_go_on_reopening_the_same_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One violation starts one fresh journal, not a fresh journal at every later kill."""
    fresh_journals: list[object] = []
    checks: list[int] = []

    def ready(*arguments: object) -> tuple[bytes, None, bytes, bool]:
        return b"R\n", None, b"", False

    async def violated_once(
        directory: Path, intents: dict[int, Intent], tally: Tally, key: bytes | None
    ) -> None:
        checks.append(1)
        if len(checks) == 2:
            tally.violations.append("found at the second kill")

    monkeypatch.setattr(campaign, "run_child_until_killed", ready)
    monkeypatch.setattr(campaign, "check_journal", violated_once)
    monkeypatch.setattr(shutil, "rmtree", lambda path, **options: fresh_journals.append(path))
    tally = run_campaign(6, seed=1, kills_per_journal=6, work_directory=tmp_path, quiet=True)
    assert tally.violations == ["found at the second kill"]
    assert len(fresh_journals) == 2  # before the first kill, and after the second


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
