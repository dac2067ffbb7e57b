"""The README's set-up commands and its example are what CI and users really run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_exactly_two_set_up_commands_and_ci_runs_the_test_one() -> None:
    commands = [block.strip() for block in _blocks("sh")]
    assert len(commands) == 2
    main_job, tests = commands
    assert "eventfold bench" in main_job
    assert "pytest" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci_lines


def test_readme_example_is_the_one_the_type_checker_checks() -> None:
    """CI runs mypy --strict over tests/, which holds a copy of the example: what a user who
    type-checks the README's code sees."""
    (example,) = _blocks("python")
    assert (ROOT / "tests" / "readme_example.py").read_text(encoding="utf-8") == example


def test_readme_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    (example,) = _blocks("python")
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    assert completed.stdout.splitlines() == [
        "1 (Deposited(amount=100),)",
        "insufficient funds",
        "Account(balance=100)",
    ]
