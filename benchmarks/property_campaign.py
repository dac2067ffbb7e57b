"""Run the property tests and state machines over many more examples than the suite does.

    python -m benchmarks.property_campaign [--scale N] [-k EXPRESSION] [-x] [TEST ...]

The test suite tries a few examples of each property (``tests/examples.py``), so that the
whole suite stays within about five minutes on two cores. This runs the same tests, with the
same checks, over ``--scale`` times their examples (default 10): every test file that uses
hypothesis, or the files and test ids given, narrowed by ``-k`` as pytest does; ``-x`` stops
at the first failure. It needs the ``test`` extra (pytest, hypothesis). It prints pytest's
report, then one line with the scale, the outcome and the time taken; the exit status is
pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ._arguments import positive_int

ROOT = Path(__file__).resolve().parent.parent
SCALE_VARIABLE = "EVENTFOLD_EXAMPLES_SCALE"
"""What tests/examples.py reads (a test keeps the two names equal)."""


def property_test_files() -> list[str]:
    """The test files that try examples of a property: those that use hypothesis."""
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").glob("test_*.py")
        if "from hypothesis" in path.read_text(encoding="utf-8")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.property_campaign",
        description="The suite's property tests over --scale times their examples.",
    )
    parser.add_argument(
        "--scale",
        type=positive_int,
        default=10,
        help="multiply every property test's count of examples by N (default: 10)",
    )
    parser.add_argument("-k", dest="expression", help="run only the tests pytest's -k selects")
    parser.add_argument("-x", action="store_true", help="stop at the first failure")
    parser.add_argument("tests", nargs="*", help="test files or ids (default: every property test)")
    arguments = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += arguments.tests or property_test_files()
    if arguments.expression is not None:
        command += ["-k", arguments.expression]
    if arguments.x:
        command.append("-x")
    environment = dict(os.environ, **{SCALE_VARIABLE: str(arguments.scale)})
    started = time.monotonic()
    status = subprocess.call(command, cwd=ROOT, env=environment)
    outcome = "passed" if status == 0 else f"failed (pytest exit status {status})"
    print(
        f"property campaign: scale {arguments.scale}, {outcome}, {time.monotonic() - started:.0f} s"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
