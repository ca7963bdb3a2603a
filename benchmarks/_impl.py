"""Which implementation a benchmark drives: dbos_async (the default) or DBOS Transact.

A benchmark script takes ``--impl {dbos_async,dbos}``. The choice has to be known before the
script's module body runs, because its workflows are decorated at import time by the chosen
package's ``DBOS``: this module reads ``--impl`` straight from ``sys.argv`` (else
``$DBOS_BENCH_IMPL``) when it is first imported, and imports ``DBOS``, ``Queue``,
``SetWorkflowID`` and ``WorkflowHandleAsync`` from that package. The scripts' own argument
parsers accept the same option (:func:`add_impl_argument`) and check that it agrees
(:func:`check_impl`).

DBOS Transact (``pip install dbos==3.4.0``, best in a separate virtual environment, e.g.
``.venv-dbos``, with ``pip install -e .`` for this repository) differs in what this module
smooths over:

- it has no ``launch_async``: ``DBOS.launch()`` is called from inside the running loop, which
  it then adopts for the async workflows its queue threads dispatch; ``DBOS.destroy()`` is
  likewise synchronous;
- ``Queue(...)`` cannot be constructed directly: queues are registered in its system
  database with ``DBOS.register_queue_async`` (picked up by its queue manager thread within
  about a second) and deleted with ``DBOS.delete_queue_async``;
- it gets a database of its own (``dbos_async`` in the name becomes ``dbos_transact``): its
  schema differs from ours, so the two never share one;
- it has no statement counter: :func:`dbos_round_trips` estimates its round trips from
  SQLAlchemy's events (each cursor execute, BEGIN, COMMIT and ROLLBACK, plus the pre-ping
  of every pool checkout). The LISTEN connection is raw psycopg and not counted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

__all__ = [
    "report",
    "runtime",
    "statements_sent",
    "benchmark_main",
    "DBOS",
    "IMPL",
    "IMPLEMENTATIONS",
    "IS_DBOS",
    "Queue",
    "SetWorkflowID",
    "WorkflowHandleAsync",
    "add_impl_argument",
    "check_impl",
    "database_name",
    "dbos_blocked_waiters",
    "dbos_registered_waiters",
    "dbos_round_trips",
    "destroy",
    "launch",
    "make_queue",
    "package_version",
]

IMPLEMENTATIONS = ("dbos_async", "dbos")
DEFAULT_IMPL = "dbos_async"
DBOS_QUEUE_STARTUP_S = 2.0
"""How long to let DBOS's queue manager (a 1 s poll) start a new queue's worker thread."""


def _impl_from(argv: Sequence[str]) -> str:
    """``--impl X`` / ``--impl=X`` in ``argv``, else ``$DBOS_BENCH_IMPL``, else the default."""
    chosen = os.environ.get("DBOS_BENCH_IMPL") or DEFAULT_IMPL
    for i, arg in enumerate(argv):
        if arg == "--impl" and i + 1 < len(argv):
            chosen = argv[i + 1]
        elif arg.startswith("--impl="):
            chosen = arg.split("=", 1)[1]
    if chosen not in IMPLEMENTATIONS:
        raise SystemExit(f"--impl must be one of {', '.join(IMPLEMENTATIONS)}, got {chosen!r}")
    return chosen


IMPL = _impl_from(sys.argv[1:])
IS_DBOS = IMPL == "dbos"

if IS_DBOS:
    from dbos import DBOS, Queue, SetWorkflowID, WorkflowHandleAsync
else:
    from dbos_async import DBOS, Queue, SetWorkflowID, WorkflowHandleAsync


def runtime() -> Any:
    """dbos_async's launched runtime (its internals are read for reports)."""
    launched = getattr(DBOS, "_runtime", None)
    if launched is None:
        raise RuntimeError("DBOS is not launched")
    return launched


def statements_sent() -> int:
    """Statements the engine has sent so far (dbos_async's internal round-trip counter).

    For DBOS Transact, an estimate from SQLAlchemy's events.
    """
    if IS_DBOS:
        return dbos_round_trips()
    count: int = runtime().db.statements
    return count


def report(
    benchmark: str,
    quick: bool,
    database: str,
    pool_size: int,
    machine: Any,
    load_at_start: Any,
    rows: Sequence[Any],
    **details: Any,
) -> dict[str, Any]:
    """The JSON report every benchmark prints: who ran what where, its rows, then details."""
    from benchmarks._common import load_average

    return {
        "benchmark": benchmark,
        "impl": IMPL,
        "impl_version": package_version(),
        "quick": quick,
        "database": database,
        "pool_size": pool_size,
        "machine": machine,
        "load_average": {"start": load_at_start, "end": load_average()},
        "rows": [row.as_dict() for row in rows],
        **details,
    }


def package_version() -> str:
    """The version of the package driven."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(IMPL)
    except PackageNotFoundError:
        return "unknown"


def add_impl_argument(parser: Any) -> None:
    """Add ``--impl`` to an ``argparse`` parser."""
    parser.add_argument(
        "--impl",
        choices=IMPLEMENTATIONS,
        default=IMPL,
        help="the implementation to benchmark: dbos_async (default) or DBOS Transact "
        "(needs the dbos package importable)",
    )


def check_impl(chosen: str) -> None:
    """Fail if the parsed ``--impl`` is not the one imported (``main(argv)`` with other argv)."""
    if chosen != IMPL:
        raise SystemExit(
            f"--impl {chosen} was given, but {IMPL} was imported: pass --impl on the "
            "command line (or set $DBOS_BENCH_IMPL) so it is known at import time"
        )


def database_name(base: str) -> str:
    """The benchmark database for the chosen implementation: DBOS gets its own."""
    if not IS_DBOS:
        return base
    return (
        base.replace("dbos_async", "dbos_transact", 1) if "dbos_async" in base else base + "_dbos"
    )


# DBOS round trips, estimated from SQLAlchemy's events ----------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()
        self.installed = False

    def add(self, *_args: object, **_kwargs: object) -> None:
        with self._lock:
            self.value += 1


_round_trips = _Counter()


def _install_round_trip_counter() -> None:
    if _round_trips.installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    for name in ("before_cursor_execute", "begin", "commit", "rollback"):
        event.listen(Engine, name, _round_trips.add)
    event.listen(Pool, "checkout", _round_trips.add)  # pool_pre_ping: one ping per checkout
    _round_trips.installed = True


def dbos_round_trips() -> int:
    """Round trips DBOS has sent so far, estimated (see the module's docstring)."""
    return _round_trips.value


# DBOS waiters ---------------------------------------------------------------------------------


def _dbos_waiter_map(kind: str) -> Any:
    from dbos._dbos import _get_dbos_instance

    sys_db = _get_dbos_instance()._sys_db
    return sys_db.notifications_map if kind == "messages" else sys_db.workflow_events_map


def dbos_registered_waiters(kind: str = "messages") -> int:
    """Waiters registered in DBOS's map of ``kind`` ("messages" or "events")."""
    signals = list(_dbos_waiter_map(kind)._dict.values())
    return sum(len(signal._waiters) for signal in signals)


def dbos_blocked_waiters(kind: str = "messages") -> int:
    """Waiters of ``kind`` actually parked in ``LoopAwareEvent.wait_async`` (private state)."""
    signals = list(_dbos_waiter_map(kind)._dict.values())
    return sum(
        1 for signal in signals for event in list(signal._waiters) if getattr(event, "_waiters", ())
    )


# Lifecycle ------------------------------------------------------------------------------------


async def launch(url: str, pool_size: int | None = None) -> None:
    """Configure and launch the chosen implementation on the benchmark database ``url``."""
    config: dict[str, Any] = {
        "name": "bench",
        "system_database_url": url,
        "application_version": "bench",
    }
    if pool_size is not None:
        config["sys_db_pool_size"] = pool_size
    if IS_DBOS:
        config["log_level"] = "WARNING"
        _install_round_trip_counter()
        DBOS(config=config)  # type: ignore[arg-type]
        DBOS.launch()  # synchronous; adopts the running loop as its "main loop"
    else:
        DBOS(config=config)  # type: ignore[arg-type]
        await DBOS.launch_async()  # type: ignore[attr-defined]


async def destroy() -> None:
    """Shut the chosen implementation down."""
    if IS_DBOS:
        DBOS.destroy()
    else:
        await DBOS.destroy_async()  # type: ignore[attr-defined]


async def make_queue(
    name: str, *, worker_concurrency: int | None = None, concurrency: int | None = None
) -> Any:
    """A queue: ``Queue(...)`` for dbos_async; registered (and its worker started) for DBOS."""
    if not IS_DBOS:
        return Queue(name, concurrency, worker_concurrency=worker_concurrency)
    queue = await DBOS.register_queue_async(  # type: ignore[attr-defined]
        name, worker_concurrency=worker_concurrency, global_concurrency=concurrency
    )
    await asyncio.sleep(DBOS_QUEUE_STARTUP_S)
    return queue


def benchmark_main(
    doc: str | None,
    run: Callable[[str, Any, bool, Any], Coroutine[Any, Any, dict[str, Any]]],
    plans: tuple[Any, Any, Any, Any],
    argv: list[str] | None = None,
) -> None:
    """The command line every benchmark script shares: parse, run, print the JSON line.

    ``plans`` is ``(full, quick, dbos_full, dbos_quick)``; ``run(server_url, plan, quick,
    reference)`` gets the plan for the chosen implementation and ours as the reference.
    """
    import argparse
    import gc
    import json

    from benchmarks._common import resolve_server_url

    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument(
        "--url",
        help="Postgres server URL (default: $DBOS_BENCH_DATABASE_URL, "
        "$DBOS_SYSTEM_DATABASE_URL, else the embedded Postgres)",
    )
    parser.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        metavar="N",
        help="set CPython's cyclic garbage collector's first threshold to N for the whole run "
        "(Python's default: 700); see README's note on tuning",
    )
    add_impl_argument(parser)
    args = parser.parse_args(argv)
    check_impl(args.impl)
    if args.gc_threshold is not None:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    full, quick, dbos_full, dbos_quick = plans
    reference = quick if args.quick else full
    plan = (dbos_quick if args.quick else dbos_full) if IS_DBOS else reference
    report = asyncio.run(run(resolve_server_url(args.url), plan, args.quick, reference))
    report["gc_threshold"] = gc.get_threshold()[0]
    print(json.dumps(report), flush=True)
