"""The property campaign runs the suite's property tests over a multiple of their examples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks import property_campaign

from . import examples

ROOT = Path(__file__).resolve().parent.parent


def _scaled(value: str, code: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, **{examples.SCALE_VARIABLE: value})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )


def test_the_campaign_sets_the_scale_the_tests_read() -> None:
    assert property_campaign.SCALE_VARIABLE == examples.SCALE_VARIABLE
    assert examples.examples(7) == 7 * examples.SCALE


def test_a_scale_multiplies_every_count_and_the_default_one() -> None:
    code = (
        "from hypothesis import settings; import tests.conftest; from tests.examples import "
        "examples; print(examples(7), settings().max_examples)"
    )
    assert _scaled("3", code).stdout.split() == ["21", "300"]
    assert _scaled("1", code).stdout.split() == ["7", "100"]


def test_a_scale_that_is_not_a_count_is_refused() -> None:
    for value in ("0", "-2", "ten"):
        run = _scaled(value, "import tests.examples")
        assert run.returncode != 0
        assert "EVENTFOLD_EXAMPLES_SCALE must be a whole number of 1 or more" in run.stderr


def test_the_campaign_runs_every_property_test_file_and_says_how_it_went() -> None:
    files = property_campaign.property_test_files()
    assert "tests/test_stateful_journal.py" in files
    assert "tests/test_power_cut.py" in files
    assert "tests/test_readme.py" not in files
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.property_campaign",
            "--scale",
            "2",
            "tests/test_codec.py",
            "-k",
            "flipped",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "property campaign: scale 2, passed," in run.stdout
