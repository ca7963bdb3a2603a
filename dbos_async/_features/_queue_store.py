"""Queue settings stored in the system database, and this process's view of them.

``DBOS.register_queue`` writes a queue's settings to the ``queues`` table; a setter changes one
setting there, checked against the others in the same transaction. Every change is announced
by a notification, on which each process reloads that queue into its catalog and wakes its
dispatcher; a full reload at launch and after every reconnection of the notify hub covers
notifications that were lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import asyncpg

from .._core._errors import DBOSException
from .._core._queue_settings import Limiter, QueueSettings, StoredQueue
from .._core._runtime import Runtime
from .._sysdb._queue_table import get_queue_row, list_queue_rows, update_queue_row

__all__ = [
    "own_application",
    "changed_settings",
    "record_stored",
    "reload_queue",
    "reload_queues",
    "settings_from_row",
    "settings_to_columns",
]

logger = logging.getLogger("dbos_async")


def _limiter(limit: int | None, period: float | None) -> Limiter | None:
    return None if limit is None or period is None else Limiter(limit=limit, period=period)


def settings_from_row(row: Mapping[str, Any]) -> QueueSettings:
    """The settings a ``queues`` row stores."""
    return QueueSettings(
        global_concurrency=row["concurrency"],
        worker_concurrency=row["worker_concurrency"],
        limiter=_limiter(row["rate_limit_max"], row["rate_limit_period_sec"]),
        partition_concurrency=row["partition_concurrency"],
        partition_worker_concurrency=row["partition_worker_concurrency"],
        partition_limiter=_limiter(
            row["partition_rate_limit_max"], row["partition_rate_limit_period_sec"]
        ),
        priority_enabled=row["priority_enabled"],
        partition_queue=row["partition_queue"] and not _has_partition_columns(row),
        polling_interval_sec=row["polling_interval_sec"],
    )


def _has_partition_columns(row: Mapping[str, Any]) -> bool:
    return any(
        row[column] is not None
        for column in (
            "partition_concurrency",
            "partition_worker_concurrency",
            "partition_rate_limit_max",
        )
    )


def settings_to_columns(settings: QueueSettings) -> dict[str, Any]:
    """The ``queues`` columns that store ``settings`` (``partition_queue`` says whether the
    queue is partitioned, as other DBOS clients read it)."""
    limiter, partition_limiter = settings.limiter, settings.partition_limiter
    return {
        "concurrency": settings.global_concurrency,
        "worker_concurrency": settings.worker_concurrency,
        "rate_limit_max": limiter["limit"] if limiter else None,
        "rate_limit_period_sec": limiter["period"] if limiter else None,
        "priority_enabled": settings.priority_enabled,
        "partition_queue": settings.partitioned,
        "partition_concurrency": settings.partition_concurrency,
        "partition_worker_concurrency": settings.partition_worker_concurrency,
        "partition_rate_limit_max": partition_limiter["limit"] if partition_limiter else None,
        "partition_rate_limit_period_sec": (
            partition_limiter["period"] if partition_limiter else None
        ),
        "polling_interval_sec": settings.polling_interval_sec,
    }


def stored_from_row(row: Mapping[str, Any]) -> StoredQueue:
    """The catalog entry for a ``queues`` row."""
    return StoredQueue(settings_from_row(row), row["application_name"])


def own_application(runtime: Runtime) -> list[str] | None:
    """The applications whose rows a runtime sees by default: its own (with the unclaimed
    ones), or every application's when it has none (a client without an application name)."""
    return None if runtime.application_name is None else [runtime.application_name]


def _serves(runtime: Runtime, row: asyncpg.Record) -> bool:
    own = runtime.application_name
    return own is None or row["application_name"] in (None, own)


async def reload_queues(runtime: Runtime) -> None:
    """Load every stored queue this process serves (its application's and unclaimed ones)
    into its catalog; wake the dispatcher for those that changed."""
    read_at = runtime.queues.mark()
    rows = await list_queue_rows(runtime.db, own_application(runtime), unclaimed=True)
    fresh = {row["name"]: stored_from_row(row) for row in rows}
    changed, again = runtime.queues.replace(fresh, read_at)
    for name in changed:
        if name in fresh:
            runtime.dispatcher.wake(name)
    for name in again:
        runtime.dispatcher.on_settings_changed(name)


def record_stored(
    runtime: Runtime, name: str, stored: StoredQueue | None, read_at: int | None = None
) -> None:
    """Put queue ``name`` as this process wrote it (``read_at`` None), or read it after
    ``runtime.queues.mark()`` returned ``read_at``, in the catalog: wake the dispatcher for it
    if it changed, or have the dispatcher read it again if another update overlapped this
    read."""
    changed = runtime.queues.update(name, stored, read_at)
    if changed is None:
        runtime.dispatcher.on_settings_changed(name)
    elif changed:
        runtime.dispatcher.wake(name)


async def reload_queue(runtime: Runtime, name: str) -> StoredQueue | None:
    """Reload one stored queue into the catalog (after a notification); its entry."""
    read_at = runtime.queues.mark()
    row = await get_queue_row(runtime.db, name)
    stored = stored_from_row(row) if row is not None and _serves(runtime, row) else None
    record_stored(runtime, name, stored, read_at)
    return stored


async def changed_settings(runtime: Runtime, name: str, **changes: Any) -> QueueSettings:
    """Change settings of the stored queue ``name``, checked against its current settings in
    the same transaction; the settings now stored."""

    def change(row: asyncpg.Record) -> dict[str, Any]:
        return settings_to_columns(settings_from_row(row).changed(**changes))

    row = await update_queue_row(runtime.db, name, change)
    if row is None:
        raise DBOSException(f"Queue {name!r} is not registered in the system database")
    stored = stored_from_row(row)
    record_stored(runtime, name, stored)
    return stored.settings
