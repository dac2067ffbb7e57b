"""Ctrl-C and SIGTERM stop ``eventfold`` quietly, at once, and clean up after the benchmarks."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from benchmarks.harness import DEFAULT_WORKLOAD, TINY, BenchContext, Progress


def test_an_error_raised_while_ctrl_c_cancels_a_scenario_does_not_hide_the_interrupt(
    tmp_path: Path,
) -> None:
    async def breaks_when_cancelled() -> None:
        try:
            signal.raise_signal(signal.SIGINT)  # asyncio's handler cancels the main task.
            await anyio.sleep(30)
        except BaseException:
            raise RuntimeError("broke while being cancelled") from None

    context = BenchContext(TINY, tmp_path, DEFAULT_WORKLOAD, Progress(enabled=False))
    with pytest.raises(KeyboardInterrupt):
        context.run_async(breaks_when_cancelled)
