"""The examples of docs/runtime.md run, give what their comments say, and type-check."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from journals import FileJournal, JournalFailed, MemoryJournal
from runtime import CommandResult, Runtime

ROOT = Path(__file__).resolve().parent.parent


def _python_blocks() -> list[str]:
    text = (ROOT / "docs" / "runtime.md").read_text(encoding="utf-8")
    return [textwrap.dedent(block) for block in re.findall(r"```python\n(.*?)```", text, re.S)]


def _run(source: str, namespace: dict[str, Any]) -> None:
    """Run ``source`` as a user's module would, not with this module's ``__future__`` flags
    (string annotations would hide the dataclasses' field types)."""
    exec(compile(source, "docs/runtime.md", "exec", dont_inherit=True), namespace)


def _namespace() -> dict[str, Any]:
    """The first block (the bank account aggregate) run in a fresh namespace."""
    namespace: dict[str, Any] = {"__name__": "runtime_md_example"}
    _run(_python_blocks()[0], namespace)
    return namespace


def test_the_guide_has_the_examples_these_tests_run() -> None:
    blocks = _python_blocks()
    assert len(blocks) == 5
    assert "Aggregate(" in blocks[0]
    assert "async with MemoryJournal() as journal, Runtime(journal)" in blocks[1]
    assert "RestartPolicy(" in blocks[2]
    assert "async def lifespan(app: Any)" in blocks[3]
    assert "AggregateTest" in blocks[4]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_running_it_answers_what_its_comments_say(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = _namespace()
    body = textwrap.indent(_python_blocks()[1], "    ")
    _run(f"async def example():\n{body}\n    return result, state\n", namespace)
    result, state = anyio.run(namespace["example"], backend=backend)
    assert isinstance(result, CommandResult)
    assert (result.version, result.position) == (2, 2)
    assert result.events == (namespace["Deposited"](amount=100),)
    assert state == namespace["Account"](owner="ada", balance=100)
    assert capsys.readouterr().out == "insufficient funds\n"


def test_the_restart_policy_example_makes_a_runtime() -> None:
    namespace = _namespace()
    namespace.update(journal=MemoryJournal())
    _run("from runtime import RestartPolicy, Runtime\n" + _python_blocks()[2], namespace)
    runtime = eval(_python_blocks()[2].strip(), namespace)
    assert isinstance(runtime, Runtime)


def test_the_test_kit_examples_pass() -> None:
    namespace = _namespace()
    _run(_python_blocks()[4], namespace)
    namespace["test_withdraw_more_than_balance_is_rejected"]()
    namespace["test_deposit"]()


def test_the_guide_s_examples_pass_the_strict_type_checker(tmp_path: Path) -> None:
    """The guide says they do: the aggregate, the running example in a coroutine, the
    restart policy, the lifespan and the test kit, as one user module checked by mypy --strict."""
    from mypy import api  # imported here: only this test needs the type checker

    aggregate, running, policy, lifespan, tests = _python_blocks()
    module = tmp_path / "guide_example.py"
    module.write_text(
        f"{aggregate}\n"
        "from journals import MemoryJournal\nfrom runtime import RestartPolicy, Runtime\n\n"
        f"async def example() -> None:\n{textwrap.indent(running, '    ')}\n\n"
        f"def policy(journal: MemoryJournal) -> Runtime:\n    return {policy.strip()}\n\n"
        f"{lifespan}\n{tests}",
        encoding="utf-8",
    )
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {ROOT}\n", encoding="utf-8")
    report, errors, status = api.run(
        [f"--config-file={config}", f"--cache-dir={tmp_path / 'cache'}", str(module)]
    )
    assert status == 0, report + errors


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_lifespan_example_opens_and_closes_in_one_task(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = _namespace()
    _run(_python_blocks()[3], namespace)
    monkeypatch.chdir(tmp_path)
    app = SimpleNamespace(state=SimpleNamespace())

    async def serve() -> None:
        async with namespace["lifespan"](app):
            await app.state.runtime.ask(namespace["account"], "42", namespace["Open"]("ada"))
        async with FileJournal(tmp_path / "journal") as again:  # Closed, and cleanly.
            assert again.statistics().events == 1
            assert again.recovery_report.torn_tails == ()

    anyio.run(serve, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_fault_injection_example_fails_the_append_it_says(backend: str, tmp_path: Path) -> None:
    import journals.testing

    (example,) = re.findall(r"::\n\n(.*?)\n\n", journals.testing.__doc__ or "", re.S)
    namespace: dict[str, Any] = {"path": str(tmp_path / "journal")}
    _run("from journals import FileJournal, NewEvent\n", namespace)
    _run("from journals.testing import FaultyFileIO\n", namespace)
    _run(f"async def example():\n{textwrap.indent(textwrap.dedent(example), '    ')}\n", namespace)
    with pytest.raises(JournalFailed) as failed:
        anyio.run(namespace["example"], backend=backend)
    assert isinstance(failed.value.__cause__, OSError)
    assert "simulated fsync failure" in str(failed.value.__cause__)
