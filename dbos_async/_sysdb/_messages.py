"""Statements for messages, events, streams, durable timers and cancellation.

Each operation a workflow checkpoints is one statement: the data change and the step's record
are written together (data-modifying CTEs), so a crash never separates them. A step record is
only written while its workflow is PENDING, which is how a cancelled workflow stops at its next
checkpoint even if the cancellation's notification was lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ._database import Database
from ._guards import owned_by
from ._workflows import SAME_STEP

__all__ = [
    "CLOSED_STREAM",
    "NULL_TOPIC",
    "cancelled_among",
    "consume_message",
    "take_message",
    "events_of",
    "insert_message",
    "keys_with_events",
    "keys_with_messages",
    "publish_notifications",
    "read_event",
    "read_stream_from",
    "set_event",
    "terminal_among",
    "write_stream",
]

NULL_TOPIC = "__null__topic__"
CLOSED_STREAM = "dbos_async.stream_closed"
"""The ``serialization`` of the row that closes a stream (its value is NULL)."""


def _recorded_as(operation: str, at: str, owner: str) -> str:
    """The statement tail that records the workflow's ``operation`` step ($1, $2) at ``at``.

    Placed after data-modifying CTEs, it makes the data change and its checkpoint one statement.
    The step is written only while the workflow is PENDING and run by ``owner``; ``RETURNING
    true`` says it was (or that a lost earlier attempt of this very statement wrote it).
    """
    return f"""
        INSERT INTO operation_outputs (workflow_uuid, function_id, function_name,
                                       started_at_epoch_ms, completed_at_epoch_ms)
        SELECT $1, $2, '{operation}', {at}, {at} WHERE {owned_by("$1", owner)}
        {SAME_STEP}
        RETURNING true
    """


async def publish_notifications(db: Database, channel: str, payloads: list[str]) -> None:
    """Send many NOTIFY payloads on one channel in one statement."""
    await db.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", channel, payloads)


# Messages ----------------------------------------------------------------------------------


async def insert_message(
    db: Database,
    destination_id: str,
    topic: str,
    message: bytes,
    serialization: str,
    message_uuid: str,
    *,
    sender: tuple[str, int, str] | None = None,
) -> bool:
    """Insert a message once per ``message_uuid``; with ``sender`` (the sending workflow, its
    function ID and the executor running it), record its send step too.

    Returns False when ``sender``'s step was already recorded by another execution (or the
    workflow is no longer the sender's to run). Raises ``asyncpg.ForeignKeyViolationError``
    when the destination does not exist.
    """
    now = db.now_ms()
    if sender is None:
        writer = db.group("messages", _insert_messages)
        if not await writer.submit(
            (message_uuid, destination_id, topic, message, serialization, now)
        ):
            raise asyncpg.ForeignKeyViolationError(f"no workflow {destination_id}")
        return True
    workflow_id, function_id, owner = sender
    recorded = await db.generic.fetchval(
        f"""
        WITH sent AS (
            INSERT INTO notifications (message_uuid, destination_uuid, topic, message,
                                       serialization, created_at_epoch_ms)
            VALUES ($3, $4, $5, $6, $7, $8)
            ON CONFLICT (message_uuid) DO NOTHING
        )
        {_recorded_as("DBOS.send", "$8", "$9")}
        """,
        workflow_id,
        function_id,
        message_uuid,
        destination_id,
        topic,
        message,
        serialization,
        now,
        owner,
    )
    return bool(recorded)


_INSERT_MESSAGES = """
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bigint[])
        WITH ORDINALITY
        AS m(message_uuid, destination_uuid, topic, message, serialization, created_at_epoch_ms,
             position)
), known AS (
    SELECT b.* FROM batch AS b
    WHERE EXISTS (SELECT 1 FROM workflow_status AS w WHERE w.workflow_uuid = b.destination_uuid)
), sent AS (
    -- In the order sent: the sequence numbers that order a topic's messages follow it.
    INSERT INTO notifications (message_uuid, destination_uuid, topic, message, serialization,
                               created_at_epoch_ms)
    SELECT message_uuid, destination_uuid, topic, message, serialization, created_at_epoch_ms
    FROM known ORDER BY position
    ON CONFLICT (message_uuid) DO NOTHING
)
SELECT DISTINCT destination_uuid FROM known
"""

MessageRow = tuple[str, str, str, bytes, str, int]


async def _insert_messages(db: Database, batch: Sequence[MessageRow]) -> list[bool]:
    """Insert a batch of messages in one statement; per message, whether its destination exists.

    A message to an unknown workflow is skipped, not allowed to fail the batch. (Should the
    destination vanish between the check and the insert, the batch is retried row by row.)
    """
    columns = [list(column) for column in zip(*batch, strict=True)]
    try:
        rows = await db.generic.fetch(_INSERT_MESSAGES, *columns)
    except asyncpg.ForeignKeyViolationError:
        if len(batch) == 1:
            return [False]
        return [flag for row in batch for flag in await _insert_messages(db, [row])]
    known = {row["destination_uuid"] for row in rows}
    return [row[1] in known for row in batch]


async def consume_message(
    db: Database,
    workflow_id: str,
    function_id: int,
    topic: str,
    *,
    owner: str,
    timer: tuple[int, bytes, str] | None = None,
) -> tuple[tuple[bytes | None, str | None] | None, bool]:
    """Take the oldest unconsumed message of ``topic`` and record it as the ``DBOS.recv`` step.

    Both happen in one statement, or neither. Returns ``(message, serialization)`` (or None when
    no message is waiting, or the workflow is no longer PENDING and ``owner``'s) and whether
    ``timer`` was recorded: with ``timer = (function_id, wake_at, serialization)``, a recv that
    finds nothing records its durable timeout in the same statement (the ``DBOS.sleep`` step).

    A retry whose first attempt committed unseen finds the recv it recorded (same start time)
    and returns that message. Raises ``asyncpg.UniqueViolationError`` when another execution
    recorded the recv first.
    """
    timer_id, wake_at, timer_format = timer if timer is not None else (None, None, None)
    row = await db.generic.fetchrow(
        f"""
        WITH prior AS (
            SELECT output, serialization, started_at_epoch_ms = $4 AS ours FROM operation_outputs
            WHERE workflow_uuid = $1 AND function_id = $2
        ), next AS (
            SELECT message_uuid FROM notifications
            WHERE destination_uuid = $1 AND topic = $3 AND NOT consumed
                AND NOT EXISTS (SELECT 1 FROM prior) AND {owned_by("$1", "$8")}
            ORDER BY seq LIMIT 1
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            UPDATE notifications AS n SET consumed = true, consumed_by_function_id = $2
            FROM next
            WHERE n.message_uuid = next.message_uuid
            RETURNING n.message, n.serialization
        ), received AS (
            INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output,
                                           serialization, started_at_epoch_ms, completed_at_epoch_ms)
            SELECT $1, $2, 'DBOS.recv', message, serialization, $4, $4 FROM taken
            RETURNING output, serialization
        ), timer AS (
            INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output,
                                           serialization, started_at_epoch_ms, completed_at_epoch_ms)
            SELECT $1, $5::int, 'DBOS.sleep', $6::bytea, $7::text, $4, $4
            WHERE $5::int IS NOT NULL AND NOT EXISTS (SELECT 1 FROM taken)
                AND NOT EXISTS (SELECT 1 FROM prior) AND {owned_by("$1", "$8")}
            {SAME_STEP}
            RETURNING 1
        ), got AS (
            SELECT output, serialization FROM received
            UNION ALL
            SELECT output, serialization FROM prior WHERE ours
        )
        SELECT (SELECT output FROM got) AS output,
               (SELECT serialization FROM got) AS serialization,
               EXISTS (SELECT 1 FROM got) AS got,
               EXISTS (SELECT 1 FROM timer) AS timer_set,
               EXISTS (SELECT 1 FROM prior WHERE NOT ours) AS conflict
        """,
        workflow_id,
        function_id,
        topic,
        db.now_ms(),
        timer_id,
        wake_at,
        timer_format,
        owner,
    )
    assert row is not None
    if row["conflict"]:
        raise asyncpg.UniqueViolationError(f"recv {workflow_id}/{function_id} already recorded")
    message = (row["output"], row["serialization"]) if row["got"] else None
    return message, bool(row["timer_set"])


_CONSUME_MANY = f"""
WITH request AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $5::text[])
        AS r(workflow_uuid, function_id, topic, owner)
), prior AS (
    SELECT r.workflow_uuid, r.function_id, o.output, o.serialization,
        o.started_at_epoch_ms = $4 AS ours
    FROM request AS r
    JOIN operation_outputs AS o
        ON o.workflow_uuid = r.workflow_uuid AND o.function_id = r.function_id
), next AS (
    SELECT r.workflow_uuid, r.function_id, m.message_uuid
    FROM request AS r
    CROSS JOIN LATERAL (
        SELECT n.message_uuid FROM notifications AS n
        WHERE n.destination_uuid = r.workflow_uuid AND n.topic = r.topic AND NOT n.consumed
            AND {owned_by("r.workflow_uuid", "r.owner")}
            AND NOT EXISTS (SELECT 1 FROM prior AS p
                            WHERE p.workflow_uuid = r.workflow_uuid
                                AND p.function_id = r.function_id)
        ORDER BY n.seq LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS m
), taken AS (
    UPDATE notifications AS n SET consumed = true, consumed_by_function_id = next.function_id
    FROM next
    WHERE n.message_uuid = next.message_uuid
    RETURNING n.message_uuid, n.message, n.serialization
), received AS (
    INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output,
                                   serialization, started_at_epoch_ms, completed_at_epoch_ms)
    SELECT next.workflow_uuid, next.function_id, 'DBOS.recv', taken.message,
        taken.serialization, $4, $4
    FROM next JOIN taken USING (message_uuid)
    RETURNING workflow_uuid, function_id, output, serialization
)
SELECT workflow_uuid, function_id, output, serialization, true AS ours FROM received
UNION ALL
SELECT workflow_uuid, function_id, output, serialization, ours FROM prior
"""

ConsumeRequest = tuple[str, int, str, str]
"""A waiting recv: its workflow, function ID, topic and the executor running it."""
Taken = tuple[bytes | None, str | None] | None


async def _consume_one(db: Database, request: ConsumeRequest) -> Taken | Exception:
    workflow_id, function_id, topic, owner = request
    try:
        taken, _ = await consume_message(db, workflow_id, function_id, topic, owner=owner)
    except asyncpg.UniqueViolationError as conflict:
        error: Exception = conflict  # another execution recorded this recv first
        return error
    return taken


async def _consume_many(
    db: Database, requests: Sequence[ConsumeRequest]
) -> list[Taken | Exception]:
    """Consume-and-record for many waiting ``recv`` calls in one statement.

    Two requests for the same (workflow, topic) would take the same message in one statement,
    so repeats are served one at a time afterwards. If another execution records one of the
    requests while the statement runs, its unique violation would abort them all: the batch is
    then retried one request at a time, so only that request fails.
    """
    results: list[Taken | Exception | None] = [None] * len(requests)
    batch: list[int] = []
    repeats: list[int] = []
    seen: set[tuple[str, str]] = set()
    for index, (workflow_id, _, topic, _) in enumerate(requests):
        (repeats if (workflow_id, topic) in seen else batch).append(index)
        seen.add((workflow_id, topic))
    if len(batch) > 1:
        try:
            rows = await db.generic.fetch(
                _CONSUME_MANY,
                [requests[i][0] for i in batch],
                [requests[i][1] for i in batch],
                [requests[i][2] for i in batch],
                db.now_ms(),
                [requests[i][3] for i in batch],
            )
        except asyncpg.UniqueViolationError:
            repeats = sorted(batch + repeats)
        else:
            got = {(row["workflow_uuid"], row["function_id"]): row for row in rows}
            for i in batch:
                row = got.get(requests[i][:2])
                if row is None:
                    results[i] = None
                elif row["ours"]:
                    results[i] = (row["output"], row["serialization"])
                else:
                    results[i] = asyncpg.UniqueViolationError("recv already recorded")
    else:
        repeats = sorted(batch + repeats)
    for i in repeats:
        results[i] = await _consume_one(db, requests[i])
    return results


async def take_message(
    db: Database, workflow_id: str, function_id: int, topic: str, *, owner: str
) -> Taken:
    """:func:`consume_message` without a timer, group-committed with other waiting recvs.

    Raises ``asyncpg.UniqueViolationError`` when another execution recorded this recv first.
    """
    writer = db.group("recv", _consume_many)
    taken: Taken | Exception = await writer.submit((workflow_id, function_id, topic, owner))
    if isinstance(taken, Exception):
        raise taken
    return taken


async def _keys_where(db: Database, keys: list[str], condition: str) -> list[str]:
    """Of ``"workflow::key"`` keys, those for which ``condition`` (on ``t.w``, ``t.k``) holds.

    Keys are split at the first ``::`` so the probe uses each table's index.
    """
    pairs = [key.split("::", 1) for key in keys if "::" in key]
    rows = await db.fetch(
        "SELECT t.w || '::' || t.k AS key FROM unnest($1::text[], $2::text[]) AS t(w, k) "
        f"WHERE {condition}",
        [pair[0] for pair in pairs],
        [pair[1] for pair in pairs],
    )
    return [row["key"] for row in rows]


async def keys_with_messages(db: Database, keys: list[str]) -> list[str]:
    """Of ``"workflow::topic"`` keys, those with an unconsumed message (for safety sweeps)."""
    return await _keys_where(
        db,
        keys,
        "EXISTS (SELECT 1 FROM notifications AS n WHERE n.destination_uuid = t.w "
        "AND n.topic = t.k AND NOT n.consumed)",
    )


# Events ------------------------------------------------------------------------------------


async def set_event(
    db: Database,
    workflow_id: str,
    function_id: int,
    key: str,
    value: bytes,
    serialization: str,
    *,
    as_step: bool,
    owner: str,
) -> bool:
    """Set an event (last value wins) and keep its history; with ``as_step``, record the step.

    Returns False when the step was already recorded by another execution (or the workflow is
    no longer PENDING and ``owner``'s).
    """
    history = """
        INSERT INTO workflow_events_history (workflow_uuid, function_id, key, value, serialization)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (workflow_uuid, key, function_id)
        DO UPDATE SET value = excluded.value, serialization = excluded.serialization
    """
    current = """
        INSERT INTO workflow_events (workflow_uuid, key, value, serialization)
        VALUES ($1, $3, $4, $5)
        ON CONFLICT (workflow_uuid, key)
        DO UPDATE SET value = excluded.value, serialization = excluded.serialization
    """
    if not as_step:
        await db.execute(
            f"WITH history AS ({history}) {current}",
            workflow_id,
            function_id,
            key,
            value,
            serialization,
        )
        return True
    recorded = await db.generic.fetchval(
        f"""
        WITH history AS ({history}), current AS ({current})
        {_recorded_as("DBOS.setEvent", "$6", "$7")}
        """,
        workflow_id,
        function_id,
        key,
        value,
        serialization,
        db.now_ms(),
        owner,
    )
    return bool(recorded)


async def read_event(
    db: Database, workflow_id: str, key: str
) -> tuple[bytes | None, str | None] | None:
    """The current value of an event, or None when it is not set."""
    row = await db.fetchrow(
        "SELECT value, serialization FROM workflow_events WHERE workflow_uuid = $1 AND key = $2",
        workflow_id,
        key,
    )
    return (row["value"], row["serialization"]) if row is not None else None


async def events_of(db: Database, workflow_id: str) -> list[asyncpg.Record]:
    """Every event of a workflow: ``key``, ``value``, ``serialization``."""
    return await db.fetch(
        "SELECT key, value, serialization FROM workflow_events WHERE workflow_uuid = $1 ORDER BY key",
        workflow_id,
    )


async def keys_with_events(db: Database, keys: list[str]) -> list[str]:
    """Of ``"workflow::key"`` keys, those whose event is set (for safety sweeps)."""
    return await _keys_where(
        db,
        keys,
        "EXISTS (SELECT 1 FROM workflow_events AS e WHERE e.workflow_uuid = t.w AND e.key = t.k)",
    )


# Streams -----------------------------------------------------------------------------------


async def write_stream(
    db: Database,
    workflow_id: str,
    function_id: int,
    key: str,
    value: bytes | None,
    serialization: str,
    *,
    as_step: bool,
    owner: str,
    step_name: str = "DBOS.writeStream",
) -> bool:
    """Append a value at the stream's next offset; with ``as_step``, record the step with it.

    Returns False when the workflow is no longer PENDING and ``owner``'s, or another execution
    recorded the step first (a retry whose first attempt committed unseen finds its own record
    and returns True without appending again). Raises ``asyncpg.UniqueViolationError``: on
    ``streams_pkey`` when a concurrent writer took the same offset (the caller retries), on
    ``operation_outputs_pkey`` when another execution records the step at the same moment.
    """
    append = """
        INSERT INTO streams (workflow_uuid, key, "offset", value, serialization, function_id)
        SELECT $1, $3, COALESCE(MAX("offset"), -1) + 1, $4, $5, $2
        FROM streams WHERE workflow_uuid = $1 AND key = $3
    """
    if not as_step:
        await db.execute(append, workflow_id, function_id, key, value, serialization)
        return True
    # Appended only when the step is not recorded yet; a plain INSERT for the step: if another
    # execution records it concurrently, the unique violation aborts the whole statement, so the
    # value is not appended twice.
    recorded = await db.generic.fetchval(
        f"""
        WITH prior AS (
            SELECT started_at_epoch_ms = $6 AS ours FROM operation_outputs
            WHERE workflow_uuid = $1 AND function_id = $2
        ), appended AS (
            {append}
            HAVING NOT EXISTS (SELECT 1 FROM prior) AND {owned_by("$1", "$8")}
            RETURNING "offset"
        ), recorded AS (
            INSERT INTO operation_outputs (workflow_uuid, function_id, function_name,
                                           started_at_epoch_ms, completed_at_epoch_ms)
            SELECT $1, $2, $7, $6, $6 FROM appended
            RETURNING true
        )
        SELECT EXISTS (SELECT 1 FROM recorded) OR EXISTS (SELECT 1 FROM prior WHERE ours)
        """,
        workflow_id,
        function_id,
        key,
        value,
        serialization,
        db.now_ms(),
        step_name,
        owner,
    )
    return bool(recorded)


async def read_stream_from(
    db: Database, workflow_id: str, key: str, offset: int
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """The workflow's row (``status`` and ``awaited``: whether its completion is announced) and
    the stream's values from ``offset`` on, in order.

    The row is None when no such workflow exists.
    """
    rows = await db.fetch(
        """
        SELECT w.status, w.awaited, s."offset", s.value, s.serialization
        FROM workflow_status AS w
        LEFT JOIN streams AS s
            ON s.workflow_uuid = w.workflow_uuid AND s.key = $2 AND s."offset" >= $3
        WHERE w.workflow_uuid = $1
        ORDER BY s."offset"
        """,
        workflow_id,
        key,
        offset,
    )
    if not rows:
        return None, []
    return rows[0], [row for row in rows if row["offset"] is not None]


# Workflow state ----------------------------------------------------------------------------


async def terminal_among(db: Database, workflow_ids: list[str]) -> list[str]:
    """Of these workflows, those that have finished or no longer exist (for safety sweeps: a
    waiter for either has something to read)."""
    rows = await db.fetch(
        """
        SELECT id FROM unnest($1::text[]) AS id
        WHERE NOT EXISTS (
            SELECT 1 FROM workflow_status
            WHERE workflow_uuid = id AND status IN ('PENDING', 'ENQUEUED', 'DELAYED')
        )
        """,
        workflow_ids,
    )
    return [row["id"] for row in rows]


async def cancelled_among(db: Database, workflow_ids: list[str]) -> list[str]:
    """Of these workflows, those marked CANCELLED."""
    rows = await db.fetch(
        "SELECT workflow_uuid FROM workflow_status WHERE workflow_uuid = ANY($1::text[]) "
        "AND status = 'CANCELLED'",
        workflow_ids,
    )
    return [row["workflow_uuid"] for row in rows]
