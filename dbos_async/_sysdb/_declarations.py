"""The ``declared_names`` table: the workflow functions and queues an application's processes
declared in code, recorded at each launch, so that a client can check names it is given."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from ._database import Database

__all__ = ["declare_names", "declared_queue", "workflow_declared"]


async def declare_names(
    db: Database,
    application: str,
    workflows: Sequence[str],
    queues: Mapping[str, Mapping[str, Any]],
) -> None:
    """Record that ``application`` declares these workflows and queues (with their settings)."""
    names = [*workflows, *queues]
    kinds = ["workflow"] * len(workflows) + ["queue"] * len(queues)
    settings = [None] * len(workflows) + [json.dumps(dict(s)) for s in queues.values()]
    await db.execute(
        """
        INSERT INTO declared_names (application_name, kind, name, settings, declared_at)
        SELECT $1, k, n, s::jsonb, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS d(k, n, s)
        ON CONFLICT (application_name, kind, name)
        DO UPDATE SET settings = EXCLUDED.settings, declared_at = EXCLUDED.declared_at
        """,
        application,
        kinds,
        names,
        settings,
        db.now_ms(),
    )


async def workflow_declared(db: Database, application: str | None, name: str) -> bool | None:
    """Whether a process of ``application`` (of any, when None) declared the workflow ``name``;
    None when no process of it ever declared anything (nothing to check against)."""
    row: asyncpg.Record | None = await db.fetchrow(
        """
        SELECT EXISTS (SELECT 1 FROM declared_names WHERE kind = 'workflow' AND name = $2
                           AND ($1::text IS NULL OR application_name = $1)) AS found,
               EXISTS (SELECT 1 FROM declared_names
                       WHERE $1::text IS NULL OR application_name = $1) AS any_declared
        """,
        application,
        name,
    )
    assert row is not None
    return bool(row["found"]) if row["any_declared"] else None


async def declared_queue(db: Database, application: str | None, name: str) -> dict[str, Any] | None:
    """The settings (as ``queues`` columns) of queue ``name`` as a process of ``application``
    (of any, when None) declared it in code, or None."""
    settings: str | None = await db.fetchval(
        """
        SELECT settings::text FROM declared_names
        WHERE kind = 'queue' AND name = $2 AND ($1::text IS NULL OR application_name = $1)
        ORDER BY declared_at DESC LIMIT 1
        """,
        application,
        name,
    )
    return None if settings is None else dict(json.loads(settings))
