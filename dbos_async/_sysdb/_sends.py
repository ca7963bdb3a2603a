"""Sending several messages in one statement, optionally to every fork of each destination.

All the messages are written, or none when a destination does not exist. Inside a workflow
the send's step is recorded in the same statement (``sender``), only while the workflow is
PENDING and run by the sender's executor. Each message is written once per ``message_uuid``;
a copy delivered to a fork of its destination gets ``<message_uuid>::<fork ID>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._database import Database
from ._guards import owned_by
from ._workflows import SAME_STEP

__all__ = ["OutgoingMessage", "insert_messages"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One serialized message to write."""

    message_uuid: str
    destination_id: str
    topic: str
    message: bytes
    serialization: str


async def insert_messages(
    db: Database,
    messages: Sequence[OutgoingMessage],
    *,
    to_forks: bool,
    sender: tuple[str, int, str] | None = None,
    step_name: str = "DBOS.send_bulk",
) -> tuple[list[str], bool, list[str]]:
    """Write ``messages`` (each also to the recursive forks of its destination, with
    ``to_forks``), and with ``sender`` (workflow, function ID, executor) record the step.

    Returns the destinations that do not exist (nothing was written then), whether the step was
    recorded (True without ``sender``), and the ``"<workflow>::<topic>"`` keys written to.
    """
    workflow_id, function_id, owner = sender if sender is not None else (None, None, None)
    record = f"""
        , recorded AS (
            INSERT INTO operation_outputs (workflow_uuid, function_id, function_name,
                                           started_at_epoch_ms, completed_at_epoch_ms)
            SELECT $8::text, $9::int, $10::text, $7, $7
            WHERE NOT EXISTS (SELECT 1 FROM missing) AND {owned_by("$8::text", "$11::text")}
            {SAME_STEP}
            RETURNING true
        )"""
    row = await db.generic.fetchrow(
        f"""
        WITH RECURSIVE batch AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[])
                WITH ORDINALITY
                AS m(message_uuid, destination_uuid, topic, message, serialization, position)
        ), missing AS (
            SELECT DISTINCT b.destination_uuid FROM batch AS b
            WHERE NOT EXISTS (
                SELECT 1 FROM workflow_status AS w WHERE w.workflow_uuid = b.destination_uuid
            )
        ), targets AS (
            SELECT position, destination_uuid AS target FROM batch
            UNION
            SELECT t.position, w.workflow_uuid FROM workflow_status AS w
            JOIN targets AS t ON w.forked_from = t.target
            WHERE $6::boolean
        ){record if sender is not None else ""}, sent AS (
            -- In the order given: the sequence numbers that order a topic's messages follow it.
            INSERT INTO notifications (message_uuid, destination_uuid, topic, message,
                                       serialization, created_at_epoch_ms)
            SELECT CASE WHEN t.target = b.destination_uuid THEN b.message_uuid
                        ELSE b.message_uuid || '::' || t.target END,
                   t.target, b.topic, b.message, b.serialization, $7
            FROM targets AS t JOIN batch AS b USING (position)
            WHERE NOT EXISTS (SELECT 1 FROM missing)
                {"AND EXISTS (SELECT 1 FROM recorded)" if sender is not None else ""}
            ORDER BY b.position, t.target
            ON CONFLICT (message_uuid) DO NOTHING
        )
        SELECT ARRAY(SELECT destination_uuid FROM missing) AS missing,
               {"EXISTS (SELECT 1 FROM recorded)" if sender is not None else "true"} AS recorded,
               ARRAY(SELECT DISTINCT t.target || '::' || b.topic
                     FROM targets AS t JOIN batch AS b USING (position)) AS delivered
        """,
        [m.message_uuid for m in messages],
        [m.destination_id for m in messages],
        [m.topic for m in messages],
        [m.message for m in messages],
        [m.serialization for m in messages],
        to_forks,
        db.now_ms(),
        *((workflow_id, function_id, step_name, owner) if sender is not None else ()),
    )
    assert row is not None
    return list(row["missing"]), bool(row["recorded"]), list(row["delivered"])
