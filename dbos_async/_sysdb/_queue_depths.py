"""How deep each queue is: its unfinished workflows counted by status and by executor, and the
queues the application's processes declared in code (for ``dbos-async queue list`` and the
admin app)."""

from __future__ import annotations

import asyncpg

from ._database import Database

__all__ = ["declared_queue_rows", "queue_depth_rows"]


async def queue_depth_rows(db: Database) -> list[asyncpg.Record]:
    """``(queue_name, status, executor_id, workflows)`` for every queue's ENQUEUED, DELAYED and
    PENDING (running) workflows, by queue name."""
    return await db.fetch(
        """
        SELECT queue_name, status, executor_id, count(*) AS workflows
        FROM workflow_status
        WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')
        GROUP BY queue_name, status, executor_id
        ORDER BY queue_name
        """
    )


async def declared_queue_rows(db: Database) -> list[asyncpg.Record]:
    """``(application_name, name, settings)`` of every queue declared in code with
    ``Queue(...)`` by a process of any application (settings: JSON text, as ``queues``
    columns), the latest declaration of each name first."""
    return await db.fetch(
        """
        SELECT application_name, name, settings::text AS settings
        FROM declared_names WHERE kind = 'queue'
        ORDER BY name, declared_at DESC
        """
    )
