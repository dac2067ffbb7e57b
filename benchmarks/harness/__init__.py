"""``eventfold bench``: eventfold measured on this machine, next to its limits and a peer.

Register it as a subcommand with ``add_arguments(parser)`` and ``run(args)``; run it directly
with ``python -m benchmarks.harness``. Scenarios: limits, journal, many-actors, hot-actor,
activation, recovery and peer (see docs/benchmarks.md for how to read the figures).
"""

from ._cli import add_arguments as add_arguments
from ._cli import main as main
from ._cli import run as run
from ._context import BenchContext as BenchContext
from ._progress import Progress as Progress
from ._results import BenchReport as BenchReport
from ._results import Figure as Figure
from ._results import Ratio as Ratio
from ._results import ScenarioResult as ScenarioResult
from ._results import TargetCheck as TargetCheck
from ._runner import SCENARIOS as SCENARIOS
from ._runner import BenchSettings as BenchSettings
from ._runner import run_bench as run_bench
from ._sizes import FULL as FULL
from ._sizes import QUICK as QUICK
from ._sizes import TINY as TINY
from ._sizes import Sizes as Sizes
from ._stats import Summary as Summary
from ._workload import DEFAULT_WORKLOAD as DEFAULT_WORKLOAD
from ._workload import CommandFactory as CommandFactory
from ._workload import Workload as Workload
from ._workload import WorkloadError as WorkloadError
from ._workload import load_workload as load_workload

__all__ = [
    "DEFAULT_WORKLOAD",
    "FULL",
    "QUICK",
    "SCENARIOS",
    "TINY",
    "BenchContext",
    "BenchReport",
    "BenchSettings",
    "CommandFactory",
    "Figure",
    "Progress",
    "Ratio",
    "ScenarioResult",
    "Sizes",
    "Summary",
    "TargetCheck",
    "Workload",
    "WorkloadError",
    "add_arguments",
    "load_workload",
    "main",
    "run",
    "run_bench",
]
