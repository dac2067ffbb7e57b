"""Ctrl-C and SIGTERM that land while the ``eventfold`` command is still being imported.

Importing the command line takes a few tenths of a second, and its signal handling is
installed only once a command runs: a Ctrl-C in that time printed a Python traceback. The
child here starts as the installed ``eventfold`` script does, with an import hook that says
when the runtime package is being imported and then waits, so the signal lands there every
time, whatever the machine's speed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from runtime._cli_signals import StopRequest

ROOT = Path(__file__).resolve().parent.parent

# As the installed script runs the command, once a finder that stops the first import of the
# runtime package is in place: it says so on stdout, then waits until the signal has come (the
# wakeup descriptor is written to as the signal arrives, before any handler of it runs).
CHILD = textwrap.dedent(
    """
    import os, signal, sys

    class StopAtTheRuntime:
        def find_spec(self, name, path=None, target=None):
            if name == "runtime":
                sys.meta_path.remove(self)
                read_end, write_end = os.pipe()
                os.set_blocking(write_end, False)
                signal.set_wakeup_fd(write_end)
                sys.stdout.write("importing\\n")
                sys.stdout.flush()
                os.read(read_end, 1)
                signal.set_wakeup_fd(-1)
            return None

    sys.meta_path.insert(0, StopAtTheRuntime())
    from eventfold_cli import main
    sys.exit(main())
    """
)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_is_imported_stops_it_as_later(
    tmp_path: Path, signal_number: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "verify", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "importing\n"
        child.send_signal(signal_number)
        out, errors = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    later = StopRequest(signal_number)  # What the command says once it runs.
    assert errors == f"{later.message}\n"
    assert out == ""
    assert child.returncode == later.exit_status


def test_the_installed_command_starts_at_the_entry_point(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["eventfold"] == "eventfold_cli:main"
    done = subprocess.run(
        [sys.executable, "-m", "eventfold_cli", "verify", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("note: ")
