"""``queue_overview``: every queue with its settings and how many of its workflows wait and run.

A queue is listed when it is registered in the system database, declared in code by a process
of the application, or holds unfinished workflows (the internal queue of resumed and forked
workflows, or a queue deleted while it still had work).
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._core._context import runtime_here
from .._core._sync import awaited
from .._sysdb._queue_depths import declared_queue_rows, queue_depth_rows
from .._sysdb._queue_table import list_queue_rows
from ._queue_store import own_application
from ._step import checkpointed

if TYPE_CHECKING:
    from .._core._runtime import Runtime

__all__ = ["SETTING_COLUMNS", "QueueOverview", "queue_overview"]

SETTING_COLUMNS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit_max",
    "rate_limit_period_sec",
    "priority_enabled",
    "partition_queue",
    "partition_concurrency",
    "partition_worker_concurrency",
    "partition_rate_limit_max",
    "partition_rate_limit_period_sec",
    "polling_interval_sec",
)
"""The settings a queue shows, named as the ``queues`` table's columns (None: no limit)."""


@dataclass(slots=True)
class QueueOverview:
    """One queue: where its settings come from, the settings, and its unfinished workflows.

    ``source`` is ``"registered"`` (``register_queue``), ``"declared"`` (``Queue(...)`` in a
    process's code) or ``"unlisted"`` (only seen on workflows); ``running`` counts the PENDING
    workflows it started, ``running_by_executor`` splits them by executor ID.
    """

    name: str
    source: str
    application_name: str | None
    settings: dict[str, Any]
    enqueued: int = 0
    delayed: int = 0
    running: int = 0
    running_by_executor: dict[str, int] = field(default_factory=dict)


def _settings(columns: Any) -> dict[str, Any]:
    return {column: columns.get(column) for column in SETTING_COLUMNS}


async def _overview(runtime: Runtime) -> list[QueueOverview]:
    db, own = runtime.db, runtime.application_name
    queues: dict[str, QueueOverview] = {}
    for row in await list_queue_rows(db, own_application(runtime), unclaimed=True):
        queues[row["name"]] = QueueOverview(
            row["name"], "registered", row["application_name"], _settings(dict(row))
        )
    for row in await declared_queue_rows(db):
        if row["name"] in queues or own not in (None, row["application_name"]):
            continue  # registered settings win; the latest declaration comes first
        settings = json.loads(row["settings"]) if row["settings"] else {}
        queues[row["name"]] = QueueOverview(
            row["name"], "declared", row["application_name"], _settings(settings)
        )
    for row in await queue_depth_rows(db):
        name = row["queue_name"]
        queue = queues.get(name)
        if queue is None:
            queue = queues[name] = QueueOverview(name, "unlisted", None, {})
        count = int(row["workflows"])
        if row["status"] == "ENQUEUED":
            queue.enqueued += count
        elif row["status"] == "DELAYED":
            queue.delayed += count
        else:
            queue.running += count
            executor = row["executor_id"] or ""
            queue.running_by_executor[executor] = queue.running_by_executor.get(executor, 0) + count
    return [queues[name] for name in sorted(queues)]


def queue_overview() -> Coroutine[Any, Any, list[QueueOverview]]:
    """Every queue of the application (registered, declared in code, or holding unfinished
    workflows) with its settings and counts of enqueued, delayed and running workflows."""
    runtime = runtime_here()
    return awaited(checkpointed("DBOS.queueOverview", lambda: runtime.forward(_overview(runtime))))
