"""Statements for reading workflows (listing them, their steps) and forking them.

List queries are assembled from fixed fragments; every value travels as a positional
parameter, never in the SQL text. Resume, fork and delete are one statement each, so each is
atomic on its own (a fork's row, its copied steps, events and stream values commit together).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from ._database import Database

__all__ = [
    "ForkRequest",
    "WorkflowFilter",
    "fork_workflow_row",
    "list_workflow_rows",
    "step_rows",
]

# Every column ``status_from_row`` reads except ``inputs`` (selected or nulled separately).
_COLUMNS = (
    "workflow_uuid, status, name, class_name, config_name, authenticated_user, assumed_role, "
    "authenticated_roles, output, error, serialization, executor_id, application_version, "
    "application_id, created_at, updated_at, recovery_attempts, queue_name, deduplication_id, "
    "priority, queue_partition_key, workflow_timeout_ms, workflow_deadline_epoch_ms, "
    "started_at_epoch_ms, forked_from, was_forked_from, parent_workflow_id, "
    "delay_until_epoch_ms, completed_at, attributes, application_name, schedule_name"
)


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """Which ``workflow_status`` rows a listing returns; None means "any" for every field.

    List fields match any of their values; times are epoch milliseconds, bounds inclusive:
    ``created_*`` on the creation time, ``completed_*`` on the completion time, ``dequeued_*``
    on the time it last started (was dequeued). ``attributes`` matches rows whose attributes
    contain these keys with these values.
    """

    workflow_ids: list[str] | None = None
    statuses: list[str] | None = None
    created_from_ms: int | None = None
    created_until_ms: int | None = None
    completed_from_ms: int | None = None
    completed_until_ms: int | None = None
    dequeued_from_ms: int | None = None
    dequeued_until_ms: int | None = None
    names: list[str] | None = None
    app_versions: list[str] | None = None
    users: list[str] | None = None
    queue_names: list[str] | None = None
    executor_ids: list[str] | None = None
    parent_workflow_ids: list[str] | None = None
    forked_from: list[str] | None = None
    schedule_names: list[str] | None = None
    application_names: list[str] | None = None
    id_prefixes: list[str] | None = None
    was_forked_from: bool | None = None
    is_fork: bool | None = None
    has_parent: bool | None = None
    attributes: str | None = None
    """A JSON object (text)."""
    queues_only: bool = False
    limit: int | None = None
    offset: int | None = None
    sort_desc: bool = False
    load_input: bool = True
    load_output: bool = True


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching strings that start with ``prefix`` (its wildcards escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


# Each list filter: (WorkflowFilter field, condition with "{}" where the parameter goes).
_ANY_OF = (
    ("workflow_ids", "workflow_uuid = ANY({}::text[])"),
    ("statuses", "status = ANY({}::text[])"),
    ("names", "name = ANY({}::text[])"),
    ("app_versions", "application_version = ANY({}::text[])"),
    ("users", "authenticated_user = ANY({}::text[])"),
    ("queue_names", "queue_name = ANY({}::text[])"),
    ("executor_ids", "executor_id = ANY({}::text[])"),
    ("parent_workflow_ids", "parent_workflow_id = ANY({}::text[])"),
    ("forked_from", "forked_from = ANY({}::text[])"),
    ("schedule_names", "schedule_name = ANY({}::text[])"),
    # Workflows nobody owns (written before applications had names) are every application's.
    ("application_names", "(application_name = ANY({}::text[]) OR application_name IS NULL)"),
)
# Each time bound: (WorkflowFilter field, condition).
_BOUNDS = (
    ("created_from_ms", "created_at >= {}::bigint"),
    ("created_until_ms", "created_at <= {}::bigint"),
    ("completed_from_ms", "completed_at >= {}::bigint"),
    ("completed_until_ms", "completed_at <= {}::bigint"),
    ("dequeued_from_ms", "started_at_epoch_ms >= {}::bigint"),
    ("dequeued_until_ms", "started_at_epoch_ms <= {}::bigint"),
)
# Each yes/no filter: (WorkflowFilter field, condition when True, condition when False).
_FLAGS = (
    ("was_forked_from", "was_forked_from", "NOT was_forked_from"),
    ("is_fork", "forked_from IS NOT NULL", "forked_from IS NULL"),
    ("has_parent", "parent_workflow_id IS NOT NULL", "parent_workflow_id IS NULL"),
)


def _list_query(f: WorkflowFilter) -> tuple[str, list[object]]:
    """The SELECT for ``f`` and its parameters."""
    args: list[object] = []

    def param(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    conditions: list[str] = []
    for field, condition in _ANY_OF:
        values = getattr(f, field)
        if values is not None and len(values) == 1:
            # One value as a plain equality: Postgres 15 reads an index in order for "= $1"
            # (a page of one status, newest first) but not for "= ANY($1)".
            scalar = condition.replace("= ANY({}::text[])", "= {}::text")
            conditions.append(scalar.format(param(values[0])))
        elif values is not None:
            conditions.append(condition.format(param(values)))
    for field, condition in _BOUNDS:
        value = getattr(f, field)
        if value is not None:
            conditions.append(condition.format(param(value)))
    for field, when_true, when_false in _FLAGS:
        flag = getattr(f, field)
        if flag is not None:
            conditions.append(when_true if flag else when_false)
    if f.id_prefixes is not None:
        patterns = [_like_prefix(prefix) for prefix in f.id_prefixes]
        conditions.append(f"workflow_uuid LIKE ANY({param(patterns)}::text[])")
    if f.attributes is not None:
        conditions.append(f"attributes @> {param(f.attributes)}::jsonb")
    if f.queues_only:
        conditions.append("queue_name IS NOT NULL")
    inputs = "inputs" if f.load_input else "NULL::bytea AS inputs"
    columns = _COLUMNS
    if not f.load_output:
        columns = columns.replace("output, error,", "NULL::bytea AS output, NULL::bytea AS error,")
    sql = f"SELECT {inputs}, {columns} FROM workflow_status"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    direction = "DESC" if f.sort_desc else "ASC"
    sql += f" ORDER BY created_at {direction}, workflow_uuid {direction}"
    if f.limit is not None:
        sql += f" LIMIT {param(f.limit)}::bigint"
    if f.offset is not None:
        sql += f" OFFSET {param(f.offset)}::bigint"
    return sql, args


async def list_workflow_rows(db: Database, f: WorkflowFilter) -> list[asyncpg.Record]:
    """The ``workflow_status`` rows matching ``f``, ordered by creation time."""
    sql, args = _list_query(f)
    return await db.fetch(sql, *args)


async def step_rows(
    db: Database,
    workflow_id: str,
    *,
    load_output: bool = True,
    limit: int | None = None,
    offset: int | None = None,
) -> list[asyncpg.Record]:
    """A workflow's recorded operations, ordered by ``function_id``."""
    values = "output, error" if load_output else "NULL::bytea AS output, NULL::bytea AS error"
    return await db.fetch(
        f"SELECT function_id, function_name, {values}, serialization, child_workflow_id, "
        "started_at_epoch_ms, completed_at_epoch_ms FROM operation_outputs "
        "WHERE workflow_uuid = $1 ORDER BY function_id LIMIT $2::bigint OFFSET $3::bigint",
        workflow_id,
        limit,
        offset or 0,
    )


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """A fork: copy ``original_id`` as ``forked_id`` with the steps before ``start_step``."""

    original_id: str
    forked_id: str
    start_step: int
    queue_name: str
    application_version: str | None = None
    queue_partition_key: str | None = None
    timeout_ms: int | None = None
    replacement_children: dict[str, str] | None = None
    """Child workflow IDs the copied steps name instead of the original's."""


# One statement: the new row, the original's mark, and the copies commit together. The
# foreign keys of the copied rows are checked at the end of the statement, after the new
# row exists. Nothing is written when the original does not exist.
_FORK = """
WITH original AS (
    SELECT * FROM workflow_status WHERE workflow_uuid = $1
), marked AS (
    UPDATE workflow_status SET was_forked_from = true, updated_at = $6
    WHERE workflow_uuid = $1
), forked AS (
    INSERT INTO workflow_status (
        workflow_uuid, status, name, class_name, config_name, authenticated_user,
        assumed_role, authenticated_roles, inputs, serialization, application_version,
        application_id, created_at, updated_at, recovery_attempts, queue_name, priority,
        forked_from, attributes, application_name, queue_partition_key, workflow_timeout_ms
    )
    SELECT $2, 'ENQUEUED', name, class_name, config_name, authenticated_user,
        assumed_role, authenticated_roles, inputs, serialization, $5,
        application_id, $6, $6, 0, $4, 0, $1, attributes, application_name, $7, $8
    FROM original
    RETURNING workflow_uuid
), steps AS (
    INSERT INTO operation_outputs (
        workflow_uuid, function_id, function_name, output, error, serialization,
        child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT $2, function_id, function_name, output, error, serialization,
        COALESCE($9::jsonb ->> child_workflow_id, child_workflow_id), started_at_epoch_ms,
        completed_at_epoch_ms
    FROM operation_outputs
    WHERE workflow_uuid = $1 AND function_id < $3 AND EXISTS (SELECT 1 FROM original)
), history AS (
    INSERT INTO workflow_events_history (workflow_uuid, function_id, key, value, serialization)
    SELECT $2, function_id, key, value, serialization FROM workflow_events_history
    WHERE workflow_uuid = $1 AND function_id < $3 AND EXISTS (SELECT 1 FROM original)
), events AS (
    INSERT INTO workflow_events (workflow_uuid, key, value, serialization)
    SELECT DISTINCT ON (key) $2, key, value, serialization FROM workflow_events_history
    WHERE workflow_uuid = $1 AND function_id < $3 AND EXISTS (SELECT 1 FROM original)
    ORDER BY key, function_id DESC
), stream_values AS (
    INSERT INTO streams (workflow_uuid, key, "offset", value, serialization, function_id)
    SELECT $2, key, "offset", value, serialization, function_id FROM streams
    WHERE workflow_uuid = $1 AND function_id < $3 AND EXISTS (SELECT 1 FROM original)
)
SELECT count(*) FROM forked
"""


async def fork_workflow_row(db: Database, fork: ForkRequest) -> bool:
    """Create the forked workflow, ENQUEUED on ``fork.queue_name``; False if the original is missing.

    The fork has the original's name, class, configured instance, inputs, authentication and
    attributes, ``forked_from`` set, and copies of the original's step outputs, event history
    and stream values recorded before ``start_step`` (events are rebuilt from that history).
    The original is marked ``was_forked_from``. Raises ``asyncpg.UniqueViolationError`` when a
    workflow with the fork's ID already exists.
    """
    forked = await db.fetchval(
        _FORK,
        fork.original_id,
        fork.forked_id,
        fork.start_step,
        fork.queue_name,
        fork.application_version,
        db.now_ms(),
        fork.queue_partition_key,
        fork.timeout_ms,
        json.dumps(fork.replacement_children) if fork.replacement_children else None,
    )
    return bool(forked)
