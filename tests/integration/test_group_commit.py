"""Group commit: batched step records and outcomes give each caller its own, correct answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dbos_async._sysdb import Database, connect_database
from dbos_async._sysdb._notify import WORKFLOW_DONE
from dbos_async._sysdb._workflows import (
    NewWorkflow,
    Outcome,
    StepRecord,
    _insert_steps,
    _insert_workflows,
    complete_workflow,
    insert_step_output,
    insert_workflow,
    record_outcomes,
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await connect_database(database_url, pool_size=4)
    yield database
    await database.close()


async def _workflows(db: Database, *ids: str, status: str = "PENDING") -> None:
    for workflow_id in ids:
        await insert_workflow(
            db,
            NewWorkflow(workflow_id, "wf", None, None, b"", "msgpack", "local", "v", status=status),
        )


def _step(workflow_id: str, function_id: int, output: bytes = b"x") -> StepRecord:
    return StepRecord(
        workflow_id, function_id, "step", output, None, "msgpack", None, 0, 0, "local"
    )


async def test_batched_steps_report_each_rows_fate(db: Database) -> None:
    await _workflows(db, "a", "b")
    await _workflows(db, "done", status="SUCCESS")
    await _insert_steps(db, [_step("a", 1, b"first")])
    results = await _insert_steps(
        db,
        [
            _step("a", 1, b"again"),  # already recorded: refused
            _step("a", 2),
            _step("b", 1, b"winner"),
            _step("b", 1, b"loser"),  # the same step twice in one batch: only one is written
            _step("done", 1),  # workflow no longer PENDING: refused
        ],
    )
    assert results == [False, True, True, False, False]
    rows = await db.fetch(
        "SELECT workflow_uuid, function_id, output FROM operation_outputs ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [("a", 1, b"first"), ("a", 2, b"x"), ("b", 1, b"winner")]


async def test_concurrent_step_writes_are_grouped_into_few_statements(db: Database) -> None:
    ids = [f"g{i}" for i in range(200)]
    await _workflows(db, *ids)
    before = db.statements
    results = await asyncio.gather(
        *(
            insert_step_output(
                db,
                workflow_id,
                1,
                "step",
                owner="local",
                output=b"o",
                error=None,
                serialization="msgpack",
            )
            for workflow_id in ids
        )
    )
    assert all(results)
    assert db.statements - before < 50  # 200 rows, a handful of batches
    assert await db.fetchval("SELECT count(*) FROM operation_outputs") == 200


async def test_batched_outcomes_notify_only_awaited_workflows(
    db: Database, database_url: str
) -> None:
    await _workflows(db, "w1", "w2", "w3")
    await _workflows(db, "finished", status="SUCCESS")
    await db.execute("UPDATE workflow_status SET awaited = true WHERE workflow_uuid = 'w2'")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener(WORKFLOW_DONE, lambda *args: heard.put_nowait(args[-1]))
    try:
        results = await record_outcomes(
            db,
            [
                Outcome("w1", "SUCCESS", b"1", None, "local"),
                Outcome("w2", "ERROR", None, b"e", "local"),
                Outcome("w2", "SUCCESS", b"late", None, "local"),  # a second outcome: not recorded
                Outcome("finished", "SUCCESS", b"x", None, "local"),  # already final
                Outcome("w3", "SUCCESS", b"3", None, "local"),
            ],
        )
        assert results == [True, True, False, False, True]
        assert await asyncio.wait_for(heard.get(), 5) == "w2"
        assert await complete_workflow(db, "w1", "SUCCESS", b"again", None, owner="local") is False
    finally:
        await listener.close()
    assert heard.empty()
    rows = await db.fetch("SELECT workflow_uuid, status FROM workflow_status ORDER BY 1")
    assert [tuple(r) for r in rows] == [
        ("finished", "SUCCESS"),
        ("w1", "SUCCESS"),
        ("w2", "ERROR"),
        ("w3", "SUCCESS"),
    ]


async def test_batched_starts_keep_every_field_and_report_existing_ids(db: Database) -> None:
    await _workflows(db, "exists")

    def new(workflow_id: str, roles: list[str] | None) -> NewWorkflow:
        return NewWorkflow(
            workflow_id,
            "wf",
            "Cls",
            "cfg",
            b"in",
            "msgpack",
            "local",
            "v",
            authenticated_user="ada",
            authenticated_roles=roles,
            timeout_ms=5000,
            deadline_epoch_ms=123,
            status="ENQUEUED",
            queue_name="q",
            priority=3,
            queue_partition_key="p",
        )

    results = await _insert_workflows(
        db,
        [
            new("s1", ["a,b", 'quote"d', "back\\slash", "{brace}"]),
            new("exists", None),
            new("s2", None),
            new("s2", ["again"]),
            new("s3", []),
        ],
    )
    assert results == [True, False, True, False, True]
    rows = {
        r["workflow_uuid"]: r
        for r in await db.fetch("SELECT * FROM workflow_status WHERE workflow_uuid LIKE 's%'")
    }
    assert list(rows["s1"]["authenticated_roles"]) == ["a,b", 'quote"d', "back\\slash", "{brace}"]
    assert rows["s2"]["authenticated_roles"] is None
    assert list(rows["s3"]["authenticated_roles"]) == []
    s1 = rows["s1"]
    assert (s1["class_name"], s1["config_name"], s1["inputs"], s1["status"]) == (
        "Cls",
        "cfg",
        b"in",
        "ENQUEUED",
    )
    assert (s1["workflow_timeout_ms"], s1["workflow_deadline_epoch_ms"], s1["priority"]) == (
        5000,
        123,
        3,
    )
    assert (s1["queue_name"], s1["queue_partition_key"], s1["recovery_attempts"]) == ("q", "p", 0)


async def test_batched_sends_fail_only_the_message_to_an_unknown_workflow(db: Database) -> None:
    from dbos_async._sysdb._messages import _insert_messages

    await _workflows(db, "inbox")
    results = await _insert_messages(
        db,
        [
            ("m1", "inbox", "t", b"1", "msgpack", 1),
            ("m2", "nobody", "t", b"2", "msgpack", 2),
            ("m1", "inbox", "t", b"dup", "msgpack", 3),  # same idempotent message: kept once
            ("m3", "inbox", "t", b"3", "msgpack", 4),
        ],
    )
    assert results == [True, False, True, True]
    rows = await db.fetch("SELECT message_uuid, message FROM notifications ORDER BY seq")
    assert [tuple(r) for r in rows] == [("m1", b"1"), ("m3", b"3")]


async def _message(db: Database, uuid: str, destination: str, body: bytes) -> None:
    await db.execute(
        "INSERT INTO notifications (message_uuid, destination_uuid, topic, message, "
        "serialization, created_at_epoch_ms) VALUES ($1, $2, 't', $3, 'msgpack', 0)",
        uuid,
        destination,
        body,
    )


async def test_batched_receives_take_distinct_messages_in_order(db: Database) -> None:
    from dbos_async._sysdb._messages import _consume_many

    await _workflows(db, "a", "b", "c")
    await _message(db, "a1", "a", b"first")
    await _message(db, "a2", "a", b"second")
    await _message(db, "b1", "b", b"for b")
    results = await _consume_many(
        db,
        [
            ("a", 1, "t", "local"),
            ("a", 2, "t", "local"),
            ("b", 1, "t", "local"),
            ("c", 1, "t", "local"),
        ],
    )
    # Two receives on one (workflow, topic) in a batch must not take the same message.
    assert results == [(b"first", "msgpack"), (b"second", "msgpack"), (b"for b", "msgpack"), None]
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE NOT consumed") == 0


async def test_a_conflicting_receive_fails_alone_and_consumes_nothing(db: Database) -> None:
    from dbos_async._sysdb._messages import _consume_many

    await _workflows(db, "a", "b")
    await _message(db, "a1", "a", b"for a")
    await _message(db, "b1", "b", b"for b")
    await _insert_steps(db, [_step("a", 3)])  # another execution already recorded a's recv
    results = await _consume_many(db, [("a", 3, "t", "local"), ("b", 2, "t", "local")])
    assert isinstance(results[0], asyncpg.UniqueViolationError)
    assert results[1] == (b"for b", "msgpack")
    consumed = await db.fetch("SELECT message_uuid FROM notifications WHERE consumed")
    assert [r["message_uuid"] for r in consumed] == ["b1"]
