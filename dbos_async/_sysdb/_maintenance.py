"""Choosing workflows for garbage collection and the global timeout, a batch at a time.

Each batch is one short statement (``FOR UPDATE SKIP LOCKED``: a row busy elsewhere is left for
the next pass), so a collection over millions of rows never holds long locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._workflows import of_application

if TYPE_CHECKING:
    from ._database import Database

__all__ = ["active_before", "finished_before", "nth_newest_created_at"]

_FINISHED = "('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"
_ACTIVE = "('PENDING', 'ENQUEUED', 'DELAYED')"


async def nth_newest_created_at(db: Database, n: int, application: str | None) -> int | None:
    """When the ``n``-th newest workflow of ``application`` was created (None: fewer exist)."""
    value = await db.fetchval(
        f"""
        SELECT created_at FROM workflow_status WHERE {of_application("$2")}
        ORDER BY created_at DESC OFFSET $1 - 1 LIMIT 1
        """,
        n,
        application,
    )
    return None if value is None else int(value)


async def _before(
    db: Database, statuses: str, cutoff_ms: int, limit: int, application: str | None
) -> list[str]:
    rows = await db.fetch(
        f"""
        SELECT workflow_uuid FROM workflow_status
        WHERE status IN {statuses} AND created_at < $1 AND {of_application("$3")}
        ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
        """,
        cutoff_ms,
        limit,
        application,
    )
    return [row["workflow_uuid"] for row in rows]


async def finished_before(
    db: Database, cutoff_ms: int, limit: int, application: str | None
) -> list[str]:
    """Up to ``limit`` finished workflows of ``application`` created before ``cutoff_ms``,
    oldest first."""
    return await _before(db, _FINISHED, cutoff_ms, limit, application)


async def active_before(
    db: Database, cutoff_ms: int, limit: int, application: str | None
) -> list[str]:
    """Up to ``limit`` pending, enqueued or delayed workflows of ``application`` created before
    ``cutoff_ms``, oldest first."""
    return await _before(db, _ACTIVE, cutoff_ms, limit, application)
