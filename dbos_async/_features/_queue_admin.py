"""Registering, finding, listing and deleting queues stored in the system database.

``register_queue`` writes the settings (``on_conflict`` decides what happens when the queue is
already there) and returns a :class:`Queue` on it; the other processes of the application see
the queue within moments, through a notification.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from .._core._context import runtime_here
from .._core._errors import DBOSConflictingRegistrationError, DBOSInvalidArgumentError
from .._core._queue_settings import DEFAULT_POLLING_INTERVAL_SEC, Limiter, QueueSettings
from .._core._validation import check_id
from .._sysdb._queue_table import delete_queue_row, list_queue_rows, upsert_queue_row
from ._queue import Queue
from ._queue_store import (
    own_application,
    record_stored,
    reload_queue,
    settings_to_columns,
    stored_from_row,
)

__all__ = [
    "QueueConflictResolution",
    "delete_queue",
    "list_queues",
    "register_queue",
    "retrieve_queue",
]

logger = logging.getLogger("dbos_async")

QueueConflictResolution = Literal["update_if_latest_version", "always_update", "never_update"]
"""What ``register_queue`` does when the queue is already registered: overwrite its settings
(``"always_update"``; ``"update_if_latest_version"``, the default, only in a process running
the application's latest version) or keep them (``"never_update"``)."""

_RESERVED_PREFIX = "_dbos"


async def register_queue(
    name: str,
    *,
    worker_concurrency: int | None = None,
    global_concurrency: int | None = None,
    partition_concurrency: int | None = None,
    partition_worker_concurrency: int | None = None,
    partition_limiter: Limiter | None = None,
    limiter: Limiter | None = None,
    polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_SEC,
    on_conflict: QueueConflictResolution = "update_if_latest_version",
    concurrency: int | None = None,
    priority_enabled: bool = False,
    partition_queue: bool = False,
) -> Queue:
    """Store a queue's settings in the system database, shared by every process of the
    application (changes reach them within moments); a :class:`Queue` on it.

    ``on_conflict`` says what happens if it is registered already: ``"always_update"``
    overwrites its settings, ``"update_if_latest_version"`` (the default) too when this process
    runs the application's latest version (an old version still running during a deploy
    leaves the new settings alone), ``"never_update"`` keeps them. ``concurrency`` is the old name of ``global_concurrency``. A queue another
    application registered is refused.
    """
    settings = QueueSettings.checked(
        concurrency=concurrency,
        global_concurrency=global_concurrency,
        worker_concurrency=worker_concurrency,
        limiter=limiter,
        partition_concurrency=partition_concurrency,
        partition_worker_concurrency=partition_worker_concurrency,
        partition_limiter=partition_limiter,
        polling_interval_sec=polling_interval_sec,
        priority_enabled=priority_enabled,
        partition_queue=partition_queue,
    )
    check_id("A queue name", name)
    if name.startswith(_RESERVED_PREFIX):
        raise DBOSInvalidArgumentError(f"Queue names starting with {_RESERVED_PREFIX!r} are DBOS's")
    if on_conflict not in ("update_if_latest_version", "always_update", "never_update"):
        raise DBOSInvalidArgumentError(f"Unknown on_conflict {on_conflict!r}")
    runtime = runtime_here()
    if runtime.queues.is_declared(name):
        raise DBOSConflictingRegistrationError(
            name, f"Queue {name!r} is declared in code with Queue(...) in this process"
        )
    owner = runtime.application_name

    async def run() -> Queue:
        row, inserted = await upsert_queue_row(
            runtime.db,
            name,
            settings_to_columns(settings),
            application_name=owner,
            update_existing=on_conflict == "always_update"
            or (on_conflict == "update_if_latest_version" and runtime.runs_latest_version),
        )
        if row["application_name"] not in (None, owner):
            raise DBOSConflictingRegistrationError(
                name, f"Queue {name!r} belongs to application {row['application_name']!r}"
            )
        stored = stored_from_row(row)
        record_stored(runtime, name, stored)
        if inserted:
            logger.info("Registered queue %s", name)
        return Queue.stored(name, stored)

    return await runtime.forward(run())


async def retrieve_queue(name: str) -> Queue | None:
    """The queue ``name``: declared in code here, or registered in the system database."""
    check_id("A queue name", name)
    runtime = runtime_here()
    declared = runtime.registry.queues.get(name)
    if declared is not None:
        queue: Queue = declared
        return queue
    stored = await runtime.forward(reload_queue(runtime, name))
    return Queue.stored(name, stored) if stored is not None else None


async def list_queues(application_name: str | list[str] | None = None) -> list[Queue]:
    """The queues registered in the system database: this application's (and unclaimed ones),
    or those of the applications named."""
    runtime = runtime_here()
    names: list[str] | None
    if application_name is None:
        names, unclaimed = own_application(runtime), True
    else:
        names = [application_name] if isinstance(application_name, str) else application_name
        if not all(isinstance(n, str) and n for n in names):
            raise DBOSInvalidArgumentError("application_name must be a name or a list of names")
        unclaimed = False
    rows: list[Any] = await runtime.forward(list_queue_rows(runtime.db, names, unclaimed=unclaimed))
    return [Queue.stored(row["name"], stored_from_row(row)) for row in rows]


async def delete_queue(name: str) -> None:
    """Delete the registered queue ``name`` (its workflows stay, but no process dequeues them
    until a queue of that name exists again)."""
    check_id("A queue name", name)
    runtime = runtime_here()
    if runtime.queues.is_declared(name):
        raise DBOSInvalidArgumentError(
            f"Queue {name!r} is declared in code: only registered queues can be deleted"
        )

    async def run() -> None:
        await delete_queue_row(runtime.db, name)
        record_stored(runtime, name, None)

    await runtime.forward(run())
