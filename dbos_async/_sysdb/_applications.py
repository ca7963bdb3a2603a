"""Re-owning rows: an application renamed, or taking the rows nobody owns (written before
applications had names)."""

from __future__ import annotations

from ._database import Database

__all__ = ["rename_application_rows"]

_OWNED = "(application_name = $1 OR ($2::boolean AND application_name IS NULL))"


async def rename_application_rows(
    db: Database,
    old_name: str | None,
    new_name: str,
    *,
    batch_size: int | None,
    adopt_unclaimed: bool,
) -> dict[str, int]:
    """Give ``new_name`` the queues and workflows ``old_name`` owns (and, with
    ``adopt_unclaimed``, those nobody owns); workflows ``batch_size`` at a time (all at once
    when None). The rows moved, by table. The old name's declarations are dropped: the
    application's processes declare again under the new name when they launch."""
    queues = await db.fetchval(
        f"WITH moved AS (UPDATE queues SET application_name = $3 WHERE {_OWNED} RETURNING 1) "
        "SELECT count(*) FROM moved",
        old_name,
        adopt_unclaimed,
        new_name,
    )
    workflows = 0
    while True:
        moved = await db.fetchval(
            f"""
            WITH batch AS (
                SELECT workflow_uuid FROM workflow_status WHERE {_OWNED}
                LIMIT $4 FOR UPDATE SKIP LOCKED
            ), moved AS (
                UPDATE workflow_status AS w SET application_name = $3
                FROM batch WHERE w.workflow_uuid = batch.workflow_uuid
                RETURNING 1
            )
            SELECT count(*) FROM moved
            """,
            old_name,
            adopt_unclaimed,
            new_name,
            batch_size,
        )
        workflows += int(moved)
        if batch_size is None or moved < batch_size:
            break
    await db.execute("DELETE FROM declared_names WHERE application_name = $1", old_name)
    return {"queues": int(queues), "workflows": workflows}
