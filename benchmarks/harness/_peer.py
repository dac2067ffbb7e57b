"""The ``peer`` scenario: the same workloads through the ``eventsourcing`` package on SQLite.

This is what an eventfold user would otherwise pick: request-per-transaction event sourcing.
Each command loads the aggregate from the database (replaying its events), decides, and saves
the new event in one SQLite transaction. The database is a file on the same disk as eventfold's
journal, with the package's SQLite persistence at its defaults (WAL, synchronous=FULL), so each
command is durable. The package is synchronous: concurrent callers are threads, each driving
its own share of the entities (so that they never conflict on one aggregate).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._context import BenchContext
from ._drive import round_figures
from ._results import Figure, ScenarioResult
from ._stats import rate_per_s, summarize
from ._windows import Round, Windows

NAME = "peer"
TITLE = "Peer: the eventsourcing package on SQLite (its defaults)"
INSTALL_HINT = (
    "the eventsourcing package is not installed, so the peer comparison was skipped; "
    "install it with: pip install eventfold[peers]"
)
_REFERENCE = "peer-benchmark-reference-0000000000000000"


def available() -> bool:
    return importlib.util.find_spec("eventsourcing") is not None


@functools.cache
def _model() -> tuple[type[Any], type[Any]]:
    """The peer's account aggregate and application, defined only when the package exists.

    Defined once per process: eventsourcing registers each aggregate class by its topic.
    """
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Account(Aggregate):
        @event("Opened")
        def __init__(self, owner: str) -> None:
            self.owner = owner
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int, reference: str) -> None:
            self.balance += amount

    class Bank(Application[Any]):
        pass

    return Account, Bank


def _open_application(bank: type[Any], database: Path) -> Any:
    # Only the two settings that select SQLite and its file: everything else at its default.
    return bank(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(database)})


def _command_loop(
    application: Any,
    entity_ids: list[Any],
    start: threading.Barrier,
    windows: Windows,
    lock: threading.Lock,
) -> None:
    """Load-decide-save commands over ``entity_ids`` until the last window closes."""
    get, save = application.repository.get, application.save
    clock = time.perf_counter_ns
    start.wait()
    index = 0
    while True:
        began = clock()
        if began >= windows.closes_ns:
            return
        account = get(entity_ids[index % len(entity_ids)])
        account.deposit(1, _REFERENCE)
        save(account)
        with lock:
            windows.completed(began, clock(), index == 0)
        index += 1


def _measure_point(
    application: Any, entity_ids: list[Any], callers: int, sizes: Any
) -> list[Round]:
    """``callers`` threads, each with its own share of the entities (see ``_windows``)."""
    warm = 1 if sizes.warmup else 0
    windows = Windows(callers, sizes.repetitions + warm, int(sizes.round_s * 1e9))
    start = threading.Barrier(callers + 1)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=callers) as pool:
        try:
            futures = [
                pool.submit(
                    _command_loop, application, entity_ids[caller::callers], start, windows, lock
                )
                for caller in range(callers)
            ]
            windows.released_ns = time.perf_counter_ns()
            start.wait()
            for future in futures:
                future.result()
        except BaseException:
            # Interrupted (Ctrl-C): callers still at the start line must not wait for this
            # thread, or leaving the pool would wait for them forever.
            start.abort()
            raise
    rounds = windows.rounds()
    return rounds[warm:] if len(rounds) > warm else rounds


def _command_figures(context: BenchContext, application: Any, account: type[Any]) -> list[Figure]:
    sizes = context.sizes
    opened = [account(owner=f"owner-{index}") for index in range(sizes.peer_entities)]
    application.save(*opened)
    entity_ids = [entity.id for entity in opened]
    figures = []
    for callers in sizes.peer_callers:
        context.progress.step(f"callers={callers}")
        rounds = _measure_point(application, entity_ids, callers, sizes)
        figures += round_figures(
            NAME,
            rounds,
            {"callers": callers},
            rate_name="commands_per_s",
            rate_label="durable one-event commands/s",
            latency_label="command latency",
            durable=True,
        )
    return figures


def _replay_rate(
    context: BenchContext, label: str, application: Any, ids: list[Any], events: int
) -> Figure:
    get = application.repository.get
    rates = []
    rounds = context.sizes.repetitions + (1 if context.sizes.warmup else 0)
    for repetition in range(rounds):
        context.progress.step(f"replay {label}, repetition {repetition + 1}/{rounds}")
        start = time.perf_counter_ns()
        for entity_id in ids:
            get(entity_id)
        elapsed = time.perf_counter_ns() - start
        if not (context.sizes.warmup and repetition == 0):
            rates.append(rate_per_s(events, elapsed))
    return Figure(
        NAME,
        "replay_events_per_s",
        f"replay events/s, {label}",
        "/s",
        summarize(rates),
        {"streams": label},
    )


def _streams(account: type[Any], application: Any, count: int, events: int) -> list[Any]:
    """Save ``count`` accounts of ``events`` events each, in one transaction."""
    built = [account(owner="replayed") for _ in range(count)]
    for entity in built:
        for _ in range(events - 1):
            entity.deposit(1, _REFERENCE)
    application.save(*built)
    return [entity.id for entity in built]


def _replay_figures(context: BenchContext, application: Any, account: type[Any]) -> list[Figure]:
    sizes = context.sizes
    context.progress.step("writing the streams to replay")
    long_ids = _streams(account, application, 1, sizes.peer_long_stream_events)
    short_ids = _streams(
        account, application, sizes.peer_short_streams, sizes.peer_short_stream_events
    )
    return [
        _replay_rate(context, "one long", application, long_ids, sizes.peer_long_stream_events),
        _replay_rate(
            context,
            "many short",
            application,
            short_ids,
            sizes.peer_short_streams * sizes.peer_short_stream_events,
        ),
    ]


def run(context: BenchContext, *, importable: Callable[[], bool] = available) -> ScenarioResult:
    if not importable():
        return ScenarioResult(NAME, TITLE, skipped=INSTALL_HINT)
    started = time.monotonic()
    account, bank = _model()
    with context.scratch("peer") as directory:
        application = _open_application(bank, directory / "eventsourcing.sqlite")
        try:
            figures = _command_figures(context, application, account)
            figures += _replay_figures(context, application, account)
        finally:
            application.close()
    version = importlib.metadata.version("eventsourcing")
    return ScenarioResult(
        NAME,
        TITLE,
        figures=tuple(figures),
        notes=(
            "each command loads the aggregate (replaying its events), decides and saves in one "
            "SQLite transaction; the peer always runs its own account aggregate, equivalent to "
            "the default workload",
        ),
        settings={
            "eventsourcing": version,
            "persistence": "eventsourcing.sqlite, defaults (WAL, synchronous=FULL)",
            "entities": context.sizes.peer_entities,
            "round_s": context.sizes.round_s,
            "long_stream_events": context.sizes.peer_long_stream_events,
            "short_streams": context.sizes.peer_short_streams,
            "short_stream_events": context.sizes.peer_short_stream_events,
        },
        elapsed_s=time.monotonic() - started,
    )
