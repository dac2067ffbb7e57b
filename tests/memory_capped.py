"""Running Python in a child process whose address space is capped at 1 GiB: a read that
would take memory in proportion to a huge (sparse) file fails there with ``MemoryError``,
not by exhausting the machine that runs the tests."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2**30, resource.RLIM_INFINITY))


def run_capped(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``python *arguments`` from the project's root, capped; what it printed and its status."""
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_capped,
        timeout=60,
    )
