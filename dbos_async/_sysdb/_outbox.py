"""Statements a client runs on the caller's own connection, inside the caller's transaction (the
transactional outbox): enqueue a workflow, send messages. They commit or roll back with the
caller's work, and so do their notifications (NOTIFY is transactional).

The caller's connection has its own ``search_path``, so every table is qualified with the
system database's schema. Each statement is built once as a :class:`Statement` with ``$n``
parameters; :meth:`Statement.named` gives the ``:pn`` form SQLAlchemy's ``text()`` takes (no
``::`` casts follow a parameter, which that form would misread).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from .._core._errors import DBOSInvalidArgumentError
from ._database import validate_schema
from ._notify import MESSAGES, QUEUES
from ._sends import OutgoingMessage
from ._workflows import NewWorkflow

__all__ = [
    "Statement",
    "enqueue_statement",
    "run_in_transaction",
    "run_in_transaction_sync",
    "send_statement",
]

_PARAMETER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Statement:
    """One SQL statement and its positional arguments."""

    sql: str
    args: tuple[Any, ...]

    def named(self) -> tuple[str, dict[str, Any]]:
        """The statement with ``:p1``-style parameters, and their values by name."""
        sql = _PARAMETER.sub(lambda m: f":p{m.group(1)}", self.sql)
        return sql, {f"p{i}": value for i, value in enumerate(self.args, start=1)}


def enqueue_statement(schema: str, wf: NewWorkflow, *, now_ms: int) -> Statement:
    """Insert an enqueued (or delayed) workflow at ``now_ms`` (the engine clock's) and announce
    it to the dispatchers. It returns
    the workflow's ID, or no row when the ID is taken; a taken deduplication ID raises
    ``unique_violation``."""
    s = validate_schema(schema)
    due = "" if wf.delay_until_epoch_ms is None else str(wf.delay_until_epoch_ms)
    sql = f"""
        WITH inserted AS (
            INSERT INTO "{s}".workflow_status (
                workflow_uuid, status, name, class_name, config_name, inputs, serialization,
                application_version, authenticated_user, authenticated_roles,
                workflow_timeout_ms, queue_name, priority, deduplication_id,
                queue_partition_key, delay_until_epoch_ms, attributes, application_name,
                created_at, updated_at
            ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                      CAST($17 AS jsonb), $18, $19, $19)
            ON CONFLICT (workflow_uuid) DO NOTHING
            RETURNING workflow_uuid, queue_name
        )
        SELECT workflow_uuid,
               pg_notify('{QUEUES}', '|' || CAST($20 AS text) || '|' || queue_name) IS NULL
        FROM inserted
    """
    return Statement(
        sql,
        (
            wf.workflow_id,
            wf.status,
            wf.name,
            wf.class_name,
            wf.config_name,
            wf.inputs,
            wf.serialization,
            wf.application_version,
            wf.authenticated_user,
            wf.authenticated_roles,
            wf.timeout_ms,
            wf.queue_name,
            wf.priority,
            wf.deduplication_id,
            wf.queue_partition_key,
            wf.delay_until_epoch_ms,
            wf.attributes,
            wf.application_name,
            now_ms,
            due,
        ),
    )


def send_statement(
    schema: str, messages: Sequence[OutgoingMessage], *, to_forks: bool = False, now_ms: int
) -> Statement:
    """Insert messages (each once per ``message_uuid``; with ``to_forks`` also to every fork
    of each destination, as ``<message_uuid>::<fork ID>``) and wake their receivers. Its one
    row's ``missing`` lists the destinations that do not exist; nothing is written then."""
    s = validate_schema(schema)
    sql = f"""
        WITH RECURSIVE batch AS (
            SELECT * FROM unnest(CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS text[]),
                                 CAST($4 AS bytea[]), CAST($5 AS text[]))
                WITH ORDINALITY AS m(message_uuid, destination_uuid, topic, message,
                                     serialization, position)
        ), missing AS (
            SELECT DISTINCT b.destination_uuid FROM batch AS b
            WHERE NOT EXISTS (SELECT 1 FROM "{s}".workflow_status AS w
                              WHERE w.workflow_uuid = b.destination_uuid)
        ), targets AS (
            SELECT position, destination_uuid AS target FROM batch
            UNION
            SELECT t.position, w.workflow_uuid FROM "{s}".workflow_status AS w
            JOIN targets AS t ON w.forked_from = t.target
            WHERE CAST($7 AS boolean)
        ), sent AS (
            INSERT INTO "{s}".notifications (message_uuid, destination_uuid, topic, message,
                                             serialization, created_at_epoch_ms)
            SELECT CASE WHEN t.target = b.destination_uuid THEN b.message_uuid
                        ELSE b.message_uuid || '::' || t.target END,
                   t.target, b.topic, b.message, b.serialization, $6
            FROM targets AS t JOIN batch AS b USING (position)
            WHERE NOT EXISTS (SELECT 1 FROM missing)
            ORDER BY b.position, t.target
            ON CONFLICT (message_uuid) DO NOTHING
            RETURNING destination_uuid, topic
        ), woken AS (
            SELECT pg_notify('{MESSAGES}', destination_uuid || '::' || topic)
            FROM (SELECT DISTINCT destination_uuid, topic FROM sent) AS d
        )
        SELECT ARRAY(SELECT destination_uuid FROM missing) AS missing,
               (SELECT count(*) FROM woken) AS woken
    """
    return Statement(
        sql,
        (
            [m.message_uuid for m in messages],
            [m.destination_id for m in messages],
            [m.topic for m in messages],
            [m.message for m in messages],
            [m.serialization for m in messages],
            now_ms,
            to_forks,
        ),
    )


def _sqlalchemy_text(sql: str) -> Any:
    try:
        from sqlalchemy import text
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DBOSInvalidArgumentError(
            "A SQLAlchemy connection or session needs SQLAlchemy: pip install "
            '"dbos_async[sqlalchemy]"'
        ) from error
    return text(sql)


async def run_in_transaction(conn: Any, statement: Statement) -> list[Any]:
    """Run ``statement`` on the caller's connection, in the caller's transaction: an asyncpg
    ``Connection``, or SQLAlchemy's ``AsyncConnection`` or ``AsyncSession``. Its rows."""
    if isinstance(conn, asyncpg.Connection):
        if not conn.is_in_transaction():
            raise DBOSInvalidArgumentError(
                "The connection is not in a transaction: open one (async with "
                "conn.transaction()) so the enqueue commits or rolls back with your work"
            )
        return list(await conn.fetch(statement.sql, *statement.args))
    execute = getattr(conn, "execute", None)
    if execute is None or not inspect.iscoroutinefunction(execute):
        raise DBOSInvalidArgumentError(
            f"Expected an asyncpg Connection or a SQLAlchemy AsyncConnection or AsyncSession, "
            f"got {conn!r}"
        )
    sql, params = statement.named()
    result = await execute(_sqlalchemy_text(sql), params)
    return list(result.all())


def run_in_transaction_sync(conn: Any, statement: Statement) -> list[Any]:
    """Run ``statement`` on the caller's SQLAlchemy ``Connection`` or ``Session``, in the
    caller's transaction. Its rows."""
    execute = getattr(conn, "execute", None)
    if execute is None or inspect.iscoroutinefunction(execute):
        raise DBOSInvalidArgumentError(
            f"Expected a SQLAlchemy Connection or Session, got {conn!r} (use the _async form "
            "for an asyncpg connection or an async SQLAlchemy one)"
        )
    sql, params = statement.named()
    return list(execute(_sqlalchemy_text(sql), params).all())
