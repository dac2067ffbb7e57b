"""``--aggregate`` and ``--commands`` find the user's modules in the current directory."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.harness import load_workload
from runtime._cli import main

ORDERS = textwrap.dedent(
    """
    from dataclasses import dataclass

    from runtime import Aggregate


    @dataclass(frozen=True)
    class Add:
        amount: int


    @dataclass(frozen=True)
    class Added:
        amount: int


    COUNTER = Aggregate(
        "counter", 0, lambda state, command: [Added(command.amount)],
        lambda state, event: state + event.amount, events={"Added": Added},
    )
    """
)
COMMANDS = textwrap.dedent(
    """
    from shopfront.orders import Add


    def commands(entity_id, index):
        return Add(index + 1)


    def commands_importing_late(entity_id, index):
        import pricing  # A module beside the package, imported only when a command is made.

        return Add(pricing.amount(index))
    """
)
TOP_LEVEL = ("shopfront", "pricing")
"""The project's own top-level modules, forgotten before and after each test."""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory holding the package ``shopfront``, made the current directory
    while the import path holds neither it nor "" (as under the ``eventfold`` script)."""
    package = tmp_path / "shopfront"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "orders.py").write_text(ORDERS, encoding="utf-8")
    (package / "bench.py").write_text(COMMANDS, encoding="utf-8")
    (package / "broken.py").write_text("raise RuntimeError('boom at import')\n", "utf-8")
    (package / "needs.py").write_text("import a_package_not_installed\n", "utf-8")
    (tmp_path / "pricing.py").write_text("def amount(index):\n    return index + 1\n", "utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "path", [entry for entry in sys.path if entry not in ("", os.getcwd())]
    )
    for name in [name for name in sys.modules if name.partition(".")[0] in TOP_LEVEL]:
        monkeypatch.delitem(sys.modules, name)
    yield tmp_path
    for name in [name for name in sys.modules if name.partition(".")[0] in TOP_LEVEL]:
        del sys.modules[name]


def test_the_documented_example_runs_from_the_project_directory(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path_before = list(sys.path)
    code = main([
        "bench", "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--aggregate", "shopfront.orders:COUNTER", "--commands", "shopfront.bench:commands",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "workload: shopfront.orders:COUNTER with shopfront.bench:commands" in captured.out
    assert sys.path == path_before, "the import path is as it was"


@pytest.mark.parametrize(
    ("aggregate", "message"),
    [
        (
            "shopback.orders:COUNTER",
            "no module 'shopback' in the current directory ({cwd}) or among the installed "
            "packages; run from the directory that holds 'shopback', add that directory to "
            "PYTHONPATH, or install it",
        ),
        ("shopfront.order:COUNTER", "the package 'shopfront' has no module 'shopfront.order'"),
        ("shopfront.broken:X", "importing 'shopfront.broken' failed (RuntimeError: boom"),
        # The user's module is found; what it imports is not installed.
        (
            "shopfront.needs:X",
            "importing 'shopfront.needs' failed (ModuleNotFoundError: No module named "
            "'a_package_not_installed')",
        ),
    ],
)
def test_a_module_that_cannot_be_imported_says_what_to_do(
    aggregate: str, message: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--suite", "tiny", "--aggregate", aggregate,
                 "--commands", "shopfront.bench:commands"])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith(f"eventfold bench: error: --aggregate '{aggregate}': ")
    assert message.format(cwd=project) in error
    assert "Traceback" not in error


def test_a_command_factory_may_import_from_the_project_directory_as_the_run_goes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([
        "bench", "--suite", "tiny", "--scenario", "limits", "--progress", "never",
        "--aggregate", "shopfront.orders:COUNTER",
        "--commands", "shopfront.bench:commands_importing_late",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_the_workload_is_loaded_from_the_current_directory_outside_the_command(
    project: Path,
) -> None:
    path_before = list(sys.path)
    workload = load_workload("shopfront.orders:COUNTER", "shopfront.bench:commands")
    assert workload.name == "shopfront.orders:COUNTER with shopfront.bench:commands"
    assert workload.aggregate.name == "counter"
    assert sys.path == path_before, "the import path is as it was"


def test_a_run_from_a_removed_directory_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    removed = tmp_path / "removed"
    removed.mkdir()
    monkeypatch.chdir(removed)  # Gone back to what it was after the test.
    removed.rmdir()
    code = main(["bench", "--suite", "tiny", "--scenario", "limits", "--progress", "never"])
    assert code == 0, capsys.readouterr().err
