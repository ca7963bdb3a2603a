"""Statements on ``workflow_status`` and ``operation_outputs``: a workflow's row and its steps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from ._batches import (
    BatchedStatement,
    Column,
    first_of_each,
    written_of_batch,
    written_or_keys,
)
from ._database import Database
from ._guards import has_status, owned_by
from ._notify import WORKFLOW_DONE

__all__ = [
    "OUTCOME_COLUMNS",
    "NewWorkflow",
    "Outcome",
    "StepOutput",
    "claim_for_recovery",
    "complete_workflow",
    "get_workflow",
    "insert_step_output",
    "insert_workflow",
    "load_step_outputs",
    "load_steps_of",
    "bind_outcomes",
    "outcome_ctes",
    "outcome_values",
    "outcomes_recorded",
    "record_outcomes",
    "recorded_outcomes",
    "unique_outcomes",
    "of_application",
    "mark_awaited",
    "mark_recovery_exhausted",
    "pending_workflow_ids",
    "workflow_status_of",
]

ACTIVE_STATUSES = ("PENDING", "ENQUEUED", "DELAYED")

R = TypeVar("R")


# The rows writes are made of (NewWorkflow, Outcome, StepRecord) are not frozen: one is built per
# workflow or step, and a frozen dataclass sets each field through object.__setattr__ (3-5x the
# cost of building one).
@dataclass(slots=True)
class NewWorkflow:
    """The row a workflow start inserts."""

    workflow_id: str
    name: str
    class_name: str | None
    config_name: str | None
    inputs: bytes
    serialization: str
    executor_id: str
    application_version: str | None
    authenticated_user: str | None = None
    assumed_role: str | None = None
    authenticated_roles: list[str] | None = None
    parent_workflow_id: str | None = None
    timeout_ms: int | None = None
    deadline_epoch_ms: int | None = None
    status: str = "PENDING"
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    delay_until_epoch_ms: int | None = None
    attributes: str | None = None
    """A JSON object (text), stored in the ``attributes`` column."""
    schedule_name: str | None = None
    """The schedule whose tick this run is (``list_workflows(schedule_name=...)``)."""
    application_name: str | None = None
    """The application that owns the workflow (None: unclaimed, any application's)."""


@dataclass(frozen=True, slots=True)
class StepOutput:
    """A step's recorded outcome, as replay reads it back."""

    function_id: int
    function_name: str
    output: bytes | None
    error: bytes | None
    serialization: str | None
    child_workflow_id: str | None


# A retried insert whose first attempt committed unseen (the connection died before the reply)
# finds its own row: same creation time, name and inputs. That conflict counts as inserted; any
# other conflict (the ID was started before) does not. The no-op update only runs on conflicts.
_SAME_START = """
ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = workflow_status.updated_at
WHERE workflow_status.created_at = excluded.created_at AND workflow_status.name = excluded.name
    AND workflow_status.inputs IS NOT DISTINCT FROM excluded.inputs
"""

_START_COLUMNS = """
    workflow_uuid, status, name, class_name, config_name, inputs, serialization,
    executor_id, application_version, authenticated_user, assumed_role, authenticated_roles,
    parent_workflow_id, workflow_timeout_ms, workflow_deadline_epoch_ms, queue_name,
    created_at, updated_at, recovery_attempts,
    priority, deduplication_id, queue_partition_key, delay_until_epoch_ms, attributes,
    application_name, schedule_name
"""
"""The columns a workflow's row starts with, in the order of the single and batched inserts'
values."""

_INSERT_WORKFLOW = f"""
INSERT INTO workflow_status ({_START_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17,
          CASE WHEN $2 = 'PENDING' THEN 1 ELSE 0 END, $18, $19, $20, $21, $22::jsonb, $23, $24)
{_SAME_START}
RETURNING true
"""


def _start_columns(wf: NewWorkflow, now: int) -> tuple[object, ...]:
    return (
        wf.workflow_id,
        wf.status,
        wf.name,
        wf.class_name,
        wf.config_name,
        wf.inputs,
        wf.serialization,
        wf.executor_id,
        wf.application_version,
        wf.authenticated_user,
        wf.assumed_role,
        wf.authenticated_roles,
        wf.parent_workflow_id,
        wf.timeout_ms,
        wf.deadline_epoch_ms,
        wf.queue_name,
        now,
        wf.priority,
        wf.deduplication_id,
        wf.queue_partition_key,
        wf.delay_until_epoch_ms,
        wf.attributes,
        wf.application_name,
        wf.schedule_name,
    )


# Role lists vary in length, so each travels as one JSON text (Postgres arrays are rectangular).
def _render_starts(c: Mapping[str, str], source: str) -> str:
    return f"""
WITH inserted AS (
    INSERT INTO workflow_status ({_START_COLUMNS})
    SELECT {c["id"]}, {c["status"]}, {c["name"]}, {c["class_name"]}, {c["config_name"]},
        {c["inputs"]}, {c["serialization"]}, {c["executor_id"]}, {c["version"]},
        {c["user_name"]}, {c["assumed_role"]},
        CASE WHEN {c["roles"]} IS NOT NULL
            THEN ARRAY(SELECT jsonb_array_elements_text({c["roles"]}::jsonb)) END,
        {c["parent"]}, {c["timeout_ms"]}, {c["deadline"]}, {c["queue_name"]}, {c["now"]},
        {c["now"]}, CASE WHEN {c["status"]} = 'PENDING' THEN 1 ELSE 0 END,
        {c["priority"]}, NULL, {c["partition_key"]}, {c["delay_until"]},
        {c["attributes"]}::jsonb, {c["app"]}, {c["schedule"]}
    FROM {source}
    {_SAME_START}
    RETURNING workflow_uuid
)
SELECT {written_or_keys(["workflow_uuid"])} FROM inserted
"""


# Numbered as _INSERT_WORKFLOW's parameters (less the deduplication ID, which goes alone).
_INSERT_WORKFLOWS = BatchedStatement(
    (
        Column("id", "text"),
        Column("status", "text", often_uniform=True),
        Column("name", "text", often_uniform=True),
        Column("class_name", "text", often_uniform=True),
        Column("config_name", "text", often_uniform=True),
        Column("inputs", "bytea"),
        Column("serialization", "text", often_uniform=True),
        Column("executor_id", "text", often_uniform=True),
        Column("version", "text", often_uniform=True),
        Column("user_name", "text", often_uniform=True),
        Column("assumed_role", "text", often_uniform=True),
        Column("roles", "text", often_uniform=True),
        Column("parent", "text", often_uniform=True),
        Column("timeout_ms", "bigint", often_uniform=True),
        Column("deadline", "bigint", often_uniform=True),
        Column("queue_name", "text", often_uniform=True),
        Column("now", "bigint", per_batch=True),
        Column("priority", "int", often_uniform=True),
        Column("partition_key", "text", often_uniform=True),
        Column("delay_until", "bigint", often_uniform=True),
        Column("attributes", "text", often_uniform=True),
        Column("app", "text", often_uniform=True),
        Column("schedule", "text", often_uniform=True),
    ),
    _render_starts,
)


def _workflow_key(wf: NewWorkflow) -> str:
    return wf.workflow_id


async def _insert_workflows(db: Database, batch: Sequence[NewWorkflow]) -> list[bool]:
    """Insert a batch of workflow rows (none with a deduplication ID) in one statement."""
    now = db.now_ms()
    rows = first_of_each(batch, _workflow_key)
    if len(batch) == 1:
        return [bool(await db.fetchval(_INSERT_WORKFLOW, *_start_columns(rows[0], now)))]
    columns: list[Any] = [
        list(column) for column in zip(*(_start_columns(wf, now) for wf in rows), strict=True)
    ]
    columns[11] = [None if roles is None else json.dumps(roles) for roles in columns[11]]
    columns[16] = now
    del columns[18]  # the deduplication ID
    sql, args = _INSERT_WORKFLOWS.bind(columns)
    return written_of_batch(await db.generic.fetchrow(sql, *args), batch, rows, _workflow_key)


def insert_workflow(db: Database, wf: NewWorkflow) -> Awaitable[bool]:
    """Insert a workflow's row; False when a row with its ID already exists.

    Group-committed with concurrent starts, except a row with a deduplication ID, which goes
    alone: its unique violation (``asyncpg.UniqueViolationError`` on
    ``workflow_status_dedup_id``, when the queue already holds an active workflow with that
    ID) must fail only its own enqueue.
    """
    if wf.deduplication_id is not None:
        return _insert_alone(db, wf)
    return db.group("starts", _insert_workflows).submit(wf)


async def _insert_alone(db: Database, wf: NewWorkflow) -> bool:
    return bool(await db.fetchval(_INSERT_WORKFLOW, *_start_columns(wf, db.now_ms())))


async def get_workflow(db: Database, workflow_id: str) -> asyncpg.Record | None:
    """Read a workflow's whole row."""
    return await db.fetchrow("SELECT * FROM workflow_status WHERE workflow_uuid = $1", workflow_id)


# NOTIFY serializes committing transactions, so it is sent only when a waiter in another
# process asked for it (``awaited``); waiters in this process are woken without Postgres.
_COMPLETE_WORKFLOW = f"""
WITH done AS (
    UPDATE workflow_status
    SET status = $2, output = $3, error = $4, updated_at = $5, completed_at = $5,
        deduplication_id = NULL
    WHERE workflow_uuid = $1 AND {has_status("PENDING")} AND executor_id IS NOT DISTINCT FROM $6
    RETURNING workflow_uuid, awaited
), notified AS (
    SELECT pg_notify('{WORKFLOW_DONE}', workflow_uuid) FROM done WHERE awaited
)
SELECT (SELECT count(*) FROM done) AS completed, (SELECT count(*) FROM notified) AS notified
"""


def outcome_ctes(c: Mapping[str, str], source: str) -> str:
    """SQL: the common table expressions that record a batch of outcomes (``done``, the rows
    recorded; ``notified``, their NOTIFYs), from the columns of :data:`OUTCOME_COLUMNS`.

    ``notified`` runs only if the statement reads it, as :func:`outcomes_recorded` does."""
    return f"""done AS (
    UPDATE workflow_status AS w
    SET status = {c["status"]}, output = {c["output"]}, error = {c["error"]},
        updated_at = {c["now"]}, completed_at = {c["now"]}, deduplication_id = NULL
    FROM {source}
    WHERE w.workflow_uuid = {c["workflow_uuid"]} AND {has_status("PENDING", "w")}
        AND w.executor_id IS NOT DISTINCT FROM {c["owner"]}
    RETURNING w.workflow_uuid, w.awaited
), notified AS (
    SELECT pg_notify('{WORKFLOW_DONE}', workflow_uuid) FROM done WHERE awaited
)"""


def outcomes_recorded() -> str:
    """SQL select list over ``done``: which outcomes were recorded (read by
    :func:`recorded_outcomes`), and how many NOTIFYs went out."""
    return f"{written_or_keys(['workflow_uuid'])}, (SELECT count(*) FROM notified)"


def _render_outcomes(c: Mapping[str, str], source: str) -> str:
    return f"WITH {outcome_ctes(c, source)}\nSELECT {outcomes_recorded()} FROM done"


OUTCOME_COLUMNS = (
    Column("workflow_uuid", "text"),
    Column("status", "text", often_uniform=True),
    Column("output", "bytea"),
    Column("error", "bytea", often_uniform=True),
    Column("now", "bigint", per_batch=True),
    Column("owner", "text", often_uniform=True),
)
"""The parameters of a batch of outcomes, numbered as _COMPLETE_WORKFLOW's."""

_OUTCOMES = BatchedStatement(OUTCOME_COLUMNS, _render_outcomes)

_COMPLETE_WORKFLOWS = _OUTCOMES.sql_all_arrays()
"""The batched outcome statement with every column an array (whose plan tests check)."""


@dataclass(slots=True)
class Outcome:
    """A workflow's final status and its serialized output or error, recorded by ``owner``."""

    workflow_id: str
    status: str
    output: bytes | None
    error: bytes | None
    owner: str


def _outcome_key(outcome: Outcome) -> str:
    return outcome.workflow_id


async def record_outcomes(db: Database, batch: Sequence[Outcome]) -> list[bool]:
    """Record a batch of outcomes in one statement; whether each one was recorded (the first
    of a workflow's outcomes in the batch, if any)."""
    if len(batch) == 1:
        o = batch[0]
        row = await db.generic.fetchrow(
            _COMPLETE_WORKFLOW, o.workflow_id, o.status, o.output, o.error, db.now_ms(), o.owner
        )
        return [row is not None and row["completed"] == 1]
    outcomes = unique_outcomes(batch)
    sql, args = bind_outcomes(outcomes, db.now_ms())
    return recorded_outcomes(await db.generic.fetchrow(sql, *args), batch, outcomes)


def bind_outcomes(outcomes: Sequence[Outcome], now_ms: int) -> tuple[str, list[Any]]:
    """The statement recording ``outcomes`` (a :func:`unique_outcomes`) and its arguments; it
    returns one row, read by :func:`recorded_outcomes`."""
    return _OUTCOMES.bind(outcome_values(outcomes, now_ms))


def outcome_values(outcomes: Sequence[Outcome], now_ms: int) -> list[Any]:
    """The values of :data:`OUTCOME_COLUMNS` for ``outcomes``, each workflow's at most once
    (an UPDATE ... FROM that meets a row twice applies either one)."""
    return [
        [o.workflow_id for o in outcomes],
        [o.status for o in outcomes],
        [o.output for o in outcomes],
        [o.error for o in outcomes],
        now_ms,
        [o.owner for o in outcomes],
    ]


def recorded_outcomes(
    row: asyncpg.Record | None, batch: Sequence[Outcome], outcomes: Sequence[Outcome]
) -> list[bool]:
    """Per outcome of ``batch``, whether a statement that sent ``outcomes`` (its
    :func:`~._batches.first_of_each`) recorded it, from the row that
    :func:`outcomes_recorded` selected (its first columns)."""
    return written_of_batch(row, batch, outcomes, _outcome_key)


def unique_outcomes(batch: Sequence[Outcome]) -> list[Outcome]:
    """``batch`` with each workflow's first outcome only."""
    return first_of_each(batch, _outcome_key)


def complete_workflow(
    db: Database,
    workflow_id: str,
    status: str,
    output: bytes | None,
    error: bytes | None,
    *,
    owner: str,
) -> Awaitable[bool]:
    """Record a workflow's outcome if it is still PENDING and ``owner``'s, and notify remote waiters.

    Group-committed with other workflows' outcomes. Returns False when the row was no longer
    PENDING (cancelled, finished elsewhere, deleted) or another executor adopted it: the first
    outcome recorded is the only one. (A retry whose first attempt committed unseen also
    returns False; the caller then reads the outcome it recorded.)
    """
    writer = db.group("outcomes", record_outcomes)
    return writer.submit(Outcome(workflow_id, status, output, error, owner))


async def mark_awaited(db: Database, workflow_id: str) -> bool:
    """Ask for a NOTIFY when ``workflow_id`` completes (a waiter outside its process); whether
    the flag was set now.

    The flag is set only while nothing else holds the row: a dispatcher's claim, which skips
    locked rows, must never miss a workflow because its waiter was marking it. Not set (the row
    was locked, or already flagged), the waiter reads the row again and retries. The completion's
    UPDATE locks the row too, so it either sees the flag and notifies, or it committed first and
    the waiter's next read sees the outcome.
    """
    marked = await db.fetchval(
        """
        UPDATE workflow_status SET awaited = true
        WHERE workflow_uuid = (SELECT workflow_uuid FROM workflow_status
                               WHERE workflow_uuid = $1 AND NOT awaited
                               FOR UPDATE SKIP LOCKED)
        RETURNING true
        """,
        workflow_id,
    )
    return bool(marked)


@dataclass(slots=True)
class StepRecord:
    """One step outcome to record."""

    workflow_id: str
    function_id: int
    function_name: str
    output: bytes | None
    error: bytes | None
    serialization: str | None
    child_workflow_id: str | None
    started_at_ms: int | None
    completed_at_ms: int
    owner: str

    def columns(self) -> tuple[object, ...]:
        """The values in the order of the INSERT's columns."""
        return (
            self.workflow_id,
            self.function_id,
            self.function_name,
            self.output,
            self.error,
            self.serialization,
            self.child_workflow_id,
            self.started_at_ms,
            self.completed_at_ms,
            self.owner,
        )


SAME_STEP = """
ON CONFLICT (workflow_uuid, function_id) DO UPDATE
SET completed_at_epoch_ms = excluded.completed_at_epoch_ms
WHERE operation_outputs.function_name = excluded.function_name
    AND operation_outputs.completed_at_epoch_ms IS NOT DISTINCT FROM excluded.completed_at_epoch_ms
    AND operation_outputs.output IS NOT DISTINCT FROM excluded.output
    AND operation_outputs.error IS NOT DISTINCT FROM excluded.error
    AND operation_outputs.child_workflow_id IS NOT DISTINCT FROM excluded.child_workflow_id
"""
"""The conflict clause of a step write: a retry whose first attempt committed unseen finds the
very record it wrote (same completion time and outcome) and counts it as written; a record of
another execution is left alone and counts as a conflict."""

_INSERT_STEP = f"""
INSERT INTO operation_outputs (
    workflow_uuid, function_id, function_name, output, error, serialization,
    child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms
)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
WHERE {owned_by("$1", "$10")}
{SAME_STEP}
RETURNING true
"""


def _render_steps(c: Mapping[str, str], source: str) -> str:
    return f"""
WITH written AS (
    INSERT INTO operation_outputs (
        workflow_uuid, function_id, function_name, output, error, serialization,
        child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT {c["workflow_uuid"]}, {c["function_id"]}, {c["function_name"]}, {c["output"]},
        {c["error"]}, {c["serialization"]}, {c["child_workflow_id"]},
        {c["started_at_epoch_ms"]}, {c["completed_at_epoch_ms"]}
    FROM {source}
    WHERE {owned_by(c["workflow_uuid"], c["owner"])}
    {SAME_STEP}
    RETURNING workflow_uuid, function_id
)
SELECT {written_or_keys(["workflow_uuid", "function_id"])} FROM written
"""


_INSERT_STEPS = BatchedStatement(
    (
        Column("workflow_uuid", "text"),
        Column("function_id", "int"),
        Column("function_name", "text", often_uniform=True),
        Column("output", "bytea"),
        Column("error", "bytea", often_uniform=True),
        Column("serialization", "text", often_uniform=True),
        Column("child_workflow_id", "text", often_uniform=True),
        Column("started_at_epoch_ms", "bigint"),
        Column("completed_at_epoch_ms", "bigint"),
        Column("owner", "text", often_uniform=True),
    ),
    _render_steps,
)


def _step_key(record: StepRecord) -> tuple[str, int]:
    return record.workflow_id, record.function_id


async def _insert_steps(db: Database, batch: Sequence[StepRecord]) -> list[bool]:
    """Write a batch of step records in one statement; whether each one was written."""
    records = first_of_each(batch, _step_key)
    if len(batch) == 1:
        return [bool(await db.generic.fetchval(_INSERT_STEP, *records[0].columns()))]
    columns = [list(column) for column in zip(*(r.columns() for r in records), strict=True)]
    sql, args = _INSERT_STEPS.bind(columns)
    return written_of_batch(await db.generic.fetchrow(sql, *args), batch, records, _step_key)


def insert_step_output(
    db: Database,
    workflow_id: str,
    function_id: int,
    function_name: str,
    *,
    owner: str,
    output: bytes | None,
    error: bytes | None,
    serialization: str | None,
    child_workflow_id: str | None = None,
    started_at_ms: int | None = None,
) -> Awaitable[bool]:
    """Record a step's outcome once (group-committed with concurrent steps of other workflows).

    Returns False when another execution recorded it first, the workflow is no longer
    PENDING, or executor ``owner`` no longer runs it; :func:`workflow_status_of` tells which.
    """
    writer = db.group("steps", _insert_steps)
    return writer.submit(
        StepRecord(
            workflow_id,
            function_id,
            function_name,
            output,
            error,
            serialization,
            child_workflow_id,
            started_at_ms,
            db.now_ms(),
            owner,
        )
    )


async def workflow_status_of(db: Database, workflow_id: str) -> tuple[str | None, str | None]:
    """A workflow's status and the executor running it; ``(None, None)`` when it does not exist."""
    row = await db.fetchrow(
        "SELECT status, executor_id FROM workflow_status WHERE workflow_uuid = $1", workflow_id
    )
    return (row["status"], row["executor_id"]) if row is not None else (None, None)


async def load_step_outputs(db: Database, workflow_id: str) -> dict[int, StepOutput]:
    """Read every recorded step of a workflow in one query, for replay."""
    return (await load_steps_of(db, [workflow_id])).get(workflow_id, {})


async def load_steps_of(
    db: Database, workflow_ids: Sequence[str]
) -> dict[str, dict[int, StepOutput]]:
    """Read the recorded steps of many workflows in one query, for replay: by workflow ID, then
    by function ID (a workflow without any is left out)."""
    rows = await db.generic.fetch(  # (by key, however stale the statistics)
        "SELECT workflow_uuid, function_id, function_name, output, error, serialization, "
        "child_workflow_id FROM operation_outputs WHERE workflow_uuid = ANY($1::text[])",
        list(workflow_ids),
    )
    steps: dict[str, dict[int, StepOutput]] = {}
    for row in rows:
        steps.setdefault(row["workflow_uuid"], {})[row["function_id"]] = StepOutput(
            row["function_id"],
            row["function_name"],
            row["output"],
            row["error"],
            row["serialization"],
            row["child_workflow_id"],
        )
    return steps


def of_application(param: str) -> str:
    """The condition that a workflow row is the application ``param``'s: it owns it, or nobody
    does (an application without a name, NULL, sees every row)."""
    return (
        f"({param}::text IS NULL OR application_name IS NULL OR application_name = {param}::text)"
    )


async def pending_workflow_ids(
    db: Database, executor_id: str, app_version: str, application: str | None
) -> list[str]:
    """IDs of the unqueued PENDING workflows this executor, application version and
    application own."""
    rows = await db.fetch(
        "SELECT workflow_uuid FROM workflow_status WHERE status = 'PENDING' "
        "AND executor_id = $1 AND application_version = $2 AND queue_name IS NULL "
        f"AND {of_application('$3')} ORDER BY created_at",
        executor_id,
        app_version,
        application,
    )
    return [row["workflow_uuid"] for row in rows]


_CLAIM_FOR_RECOVERY = f"""
UPDATE workflow_status SET recovery_attempts = recovery_attempts + 1, updated_at = $3
WHERE workflow_uuid = ANY($1::text[]) AND {has_status("PENDING")}
    AND executor_id IS NOT DISTINCT FROM $2
RETURNING *
"""


async def claim_for_recovery(
    db: Database, workflow_ids: Sequence[str], executor_id: str
) -> list[asyncpg.Record]:
    """Count a recovery attempt on those of ``workflow_ids`` that are PENDING and
    ``executor_id``'s, in one statement, and return their rows (in no particular order).

    One that is no longer PENDING, or that another executor adopted meanwhile, is left out.
    Planned generically, without whole-table scans: by key, however stale the statistics.
    """
    return await db.generic.fetch(_CLAIM_FOR_RECOVERY, list(workflow_ids), executor_id, db.now_ms())


_RECOVERY_EXHAUSTED = f"""
WITH done AS (
    UPDATE workflow_status
    SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', updated_at = $2, completed_at = $2,
        deduplication_id = NULL
    WHERE workflow_uuid = $1 AND {has_status("PENDING")}
    RETURNING workflow_uuid
)
SELECT pg_notify('{WORKFLOW_DONE}', workflow_uuid) FROM done
"""


async def mark_recovery_exhausted(db: Database, workflow_id: str) -> None:
    """Move a workflow that keeps crashing to MAX_RECOVERY_ATTEMPTS_EXCEEDED."""
    await db.fetch(_RECOVERY_EXHAUSTED, workflow_id, db.now_ms())
