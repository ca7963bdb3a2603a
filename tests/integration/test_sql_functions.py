"""The system database's SQL functions, called from a plain asyncpg connection on real Postgres.

``dbos.enqueue_workflow(...)`` and ``dbos.send_message(...)`` take DBOS's parameters (names,
order, defaults), write portable JSON that Python workflows read, and NOTIFY the engine inside
the caller's transaction: a workflow enqueued in a transaction that commits starts at once
(its queue re-checks only every minute, so only the notification can start it within the
test's bounds), one enqueued in a transaction that rolls back never exists; a message sent in a
committed transaction wakes a waiting ``recv``. Bad calls raise clear errors with standard
SQLSTATEs (``unique_violation`` for a taken deduplication ID, ``foreign_key_violation`` for an
unknown destination).

Each queued workflow passes a waypoint named by its ID when it starts, and the test waits for
that before it waits for the result: a waiter marks the row it waits on, and a claim that meets
that short row lock skips the row (``SKIP LOCKED``) until the queue's next re-check, a minute
away here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS, DBOSConfiguredInstance
from tests.waypoints import Waypoints

RESULT_TIMEOUT_SECONDS = 20.0
QUEUE = "sql_q"
UNSERVED = "sql_unserved"  # no process dispatches from it: what is enqueued there stays

waypoints = Waypoints()
bodies: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()
    bodies.clear()


@pytest.fixture
async def sql(dbos: type[DBOS], database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection (default search_path), with DBOS launched and ``sql_q`` registered to
    re-check for work only every minute."""
    await DBOS.register_queue_async(QUEUE, polling_interval_sec=60)
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@DBOS.workflow()
async def sql_greet(name: str, when: dt.datetime, *, punctuation: str = "!") -> dict[str, Any]:
    waypoints.passed(DBOS.workflow_id or "")
    bodies.append(name)
    return {
        "greeting": f"hello {name}{punctuation}",
        "when": type(when).__name__,
        "user": DBOS.authenticated_user,
        "roles": DBOS.authenticated_roles,
    }


@DBOS.workflow()
async def sql_typed(day: dt.date, *, amount: decimal.Decimal) -> list[str]:
    waypoints.passed(DBOS.workflow_id or "")
    return [repr(day), repr(amount)]


@DBOS.workflow()
async def sql_receiver() -> list[Any]:
    waypoints.passed("receiving")
    untitled = await DBOS.recv_async(None, timeout_seconds=RESULT_TIMEOUT_SECONDS)
    news = await DBOS.recv_async("news", timeout_seconds=RESULT_TIMEOUT_SECONDS)
    return [untitled, news]


@DBOS.dbos_class()
class SqlGreeter(DBOSConfiguredInstance):
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        super().__init__(greeting)

    @DBOS.workflow()
    async def greet(self, name: str) -> str:
        waypoints.passed(DBOS.workflow_id or "")
        return f"{self.greeting}, {name}"


SqlGreeter("bonjour")


async def _result(workflow_id: str) -> Any:
    """The result of a queued workflow, once it started."""
    await waypoints.reached(workflow_id)
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    return await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)


async def _enqueue_greeting(conn: asyncpg.Connection, name: str) -> str:
    workflow_id: str = await conn.fetchval(
        "SELECT dbos.enqueue_workflow('sql_greet', $1, ARRAY[$2::json, $3::json])",
        QUEUE,
        json.dumps(name),
        json.dumps("2024-05-06T07:08:09Z"),
    )
    return workflow_id


# enqueue_workflow -------------------------------------------------------------------------


async def test_a_workflow_enqueued_in_a_committed_transaction_runs(
    sql: asyncpg.Connection, database_url: str
) -> None:
    async with sql.transaction():
        # DBOS's parameter names, in named notation, as SQL written for DBOS calls them.
        workflow_id = await sql.fetchval(
            """
            SELECT dbos.enqueue_workflow(
                workflow_name => 'sql_greet',
                queue_name => $1,
                positional_args => ARRAY['"ada"', '"2024-05-06T07:08:09.123Z"']::json[],
                named_args => '{"punctuation": "?"}',
                authenticated_user => 'alice',
                authenticated_roles => '["admin", "ops"]'
            )
            """,
            QUEUE,
        )
        assert await DBOS.get_workflow_status_async(workflow_id) is None  # not committed yet
    assert await _result(workflow_id) == {
        "greeting": "hello ada?",
        "when": "datetime",
        "user": "alice",
        "roles": ["admin", "ops"],
    }
    status = await DBOS.get_workflow_status_async(workflow_id)
    assert status is not None
    assert (status.status, status.queue_name, status.name) == ("SUCCESS", QUEUE, "sql_greet")
    assert status.input == {
        "args": ("ada", "2024-05-06T07:08:09.123Z"),
        "kwargs": {"punctuation": "?"},
    }
    assert status.authenticated_roles == ["admin", "ops"]
    # The output is portable, like the inputs: readable from SQL.
    output = await sql.fetchval(
        "SELECT convert_from(output, 'UTF8')::jsonb FROM dbos.workflow_status "
        "WHERE workflow_uuid = $1",
        workflow_id,
    )
    assert json.loads(output)["greeting"] == "hello ada?"


async def test_a_workflow_enqueued_in_a_rolled_back_transaction_never_exists(
    sql: asyncpg.Connection,
) -> None:
    transaction = sql.transaction()
    await transaction.start()
    rolled_back = await _enqueue_greeting(sql, "ghost")
    await transaction.rollback()
    committed = await _enqueue_greeting(sql, "real")  # autocommit
    assert (await _result(committed))["greeting"] == "hello real!"
    assert await DBOS.get_workflow_status_async(rolled_back) is None
    assert bodies == ["real"]


async def test_portable_arguments_are_converted_by_the_type_hints(sql: asyncpg.Connection) -> None:
    workflow_id = await sql.fetchval(
        "SELECT dbos.enqueue_workflow('sql_typed', $1, ARRAY['\"2024-05-06\"'::json], "
        '\'{"amount": "12.50"}\')',
        QUEUE,
    )
    assert await _result(workflow_id) == [
        repr(dt.date(2024, 5, 6)),
        repr(decimal.Decimal("12.50")),
    ]


async def test_a_method_of_a_configured_instance(sql: asyncpg.Connection) -> None:
    workflow_id = await sql.fetchval(
        "SELECT dbos.enqueue_workflow('SqlGreeter.greet', $1, ARRAY['\"Ada\"'::json], "
        "class_name => 'SqlGreeter', config_name => 'bonjour')",
        QUEUE,
    )
    assert await _result(workflow_id) == "bonjour, Ada"


async def test_options_are_recorded(sql: asyncpg.Connection) -> None:
    far = int(time.time() * 1000) + 3_600_000
    delayed = await sql.fetchval(
        "SELECT dbos.enqueue_workflow('sql_greet', $1, workflow_id => 'sql-delayed', "
        "app_version => 'v7', timeout_ms => 5000, priority => 3, queue_partition_key => 'p', "
        "delay_until_epoch_ms => $2, application_name => 'test-app')",
        UNSERVED,
        far,
    )
    assert delayed == "sql-delayed"
    row = await sql.fetchrow(
        "SELECT status, application_version, workflow_timeout_ms, priority, queue_partition_key, "
        "delay_until_epoch_ms, application_name, executor_id, serialization, "
        "convert_from(inputs, 'UTF8')::jsonb AS inputs "
        "FROM dbos.workflow_status WHERE workflow_uuid = 'sql-delayed'"
    )
    assert row is not None
    assert dict(row) | {"inputs": json.loads(row["inputs"])} == {
        "status": "DELAYED",
        "application_version": "v7",
        "workflow_timeout_ms": 5000,
        "priority": 3,
        "queue_partition_key": "p",
        "delay_until_epoch_ms": far,
        "application_name": "test-app",
        "executor_id": None,
        "serialization": "portable_json",
        "inputs": {"positionalArgs": [], "namedArgs": {}},
    }


async def test_a_delay_already_past_runs_at_once(sql: asyncpg.Connection) -> None:
    past = int(time.time() * 1000) - 1000
    workflow_id = await sql.fetchval(
        "SELECT dbos.enqueue_workflow('sql_greet', $1, ARRAY['\"late\"', '\"2024-01-01\"']::json[], "
        "delay_until_epoch_ms => $2)",
        QUEUE,
        past,
    )
    assert (await _result(workflow_id))["greeting"] == "hello late!"


async def test_a_taken_deduplication_id_is_a_unique_violation(sql: asyncpg.Connection) -> None:
    enqueue = (
        "SELECT dbos.enqueue_workflow('sql_greet', $1, workflow_id => $2, deduplication_id => 'd')"
    )
    first = await sql.fetchval(enqueue, UNSERVED, "dedup-1")
    # The same enqueue again (same workflow ID) is the same enqueue.
    assert await sql.fetchval(enqueue, UNSERVED, "dedup-1") == first == "dedup-1"
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        async with sql.transaction():
            await sql.fetchval(enqueue, UNSERVED, "dedup-2")
    assert raised.value.sqlstate == "23505"
    assert raised.value.constraint_name == "workflow_status_dedup_id"
    assert "deduplication ID d" in str(raised.value) and "dedup-1" in str(raised.value)
    assert await DBOS.get_workflow_status_async("dedup-2") is None
    # Another queue has its own deduplication IDs.
    assert await sql.fetchval(enqueue, QUEUE + "_other", "dedup-3") == "dedup-3"


@pytest.mark.parametrize(
    "call",
    [
        "SELECT dbos.enqueue_workflow('', 'q')",
        "SELECT dbos.enqueue_workflow(NULL, 'q')",
        "SELECT dbos.enqueue_workflow('w', '')",
        "SELECT dbos.enqueue_workflow('w', 'q', named_args => '[1]')",
        "SELECT dbos.enqueue_workflow('w', 'q', workflow_id => '')",
        "SELECT dbos.enqueue_workflow('w', 'q', timeout_ms => 0)",
        "SELECT dbos.enqueue_workflow('w', 'q', delay_until_epoch_ms => -1)",
        "SELECT dbos.enqueue_workflow('w', 'q', authenticated_roles => '\"admin\"')",
        "SELECT dbos.send_message('', '1')",
        "SELECT dbos.send_message('x', '1', message_id => '')",
    ],
)
async def test_bad_arguments_are_refused(sql: asyncpg.Connection, call: str) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError, match="must"):
        await sql.fetchval(call)
    assert await sql.fetchval("SELECT count(*) FROM dbos.workflow_status") == 0


async def test_names_resolve_in_the_system_schema_only(sql: asyncpg.Connection) -> None:
    settings = await sql.fetchval(
        "SELECT array_agg(p.proconfig[1] ORDER BY p.proname) FROM pg_proc AS p "
        "JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'dbos' AND p.proname IN ('enqueue_workflow', 'send_message')"
    )
    assert settings == ["search_path=pg_catalog, dbos, pg_temp"] * 2
    # A caller's temporary table of the same name does not capture the insert.
    await sql.execute("CREATE TEMP TABLE workflow_status (workflow_uuid text)")
    workflow_id = await _enqueue_greeting(sql, "temp")
    assert await sql.fetchval("SELECT count(*) FROM pg_temp.workflow_status") == 0
    assert (await _result(workflow_id))["greeting"] == "hello temp!"


# send_message -----------------------------------------------------------------------------


async def test_a_message_sent_in_a_committed_transaction_wakes_recv(
    sql: asyncpg.Connection,
) -> None:
    handle = await DBOS.start_workflow_async(sql_receiver)
    await waypoints.reached("receiving")
    transaction = sql.transaction()
    await transaction.start()
    await sql.execute("SELECT dbos.send_message($1, '\"rolled back\"')", handle.workflow_id)
    await transaction.rollback()
    async with sql.transaction():
        await sql.execute("SELECT dbos.send_message($1, '{\"n\": 1}')", handle.workflow_id)
        await sql.execute(
            "SELECT dbos.send_message($1, '[1, \"two\"]', 'news', 'news-1')", handle.workflow_id
        )
        # A message ID already sent is not sent twice.
        await sql.execute(
            "SELECT dbos.send_message($1, '\"again\"', 'news', 'news-1')", handle.workflow_id
        )
    result = await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    assert result == [{"n": 1}, [1, "two"]]
    rows = await sql.fetch(
        "SELECT topic, serialization, convert_from(message, 'UTF8')::jsonb AS m "
        "FROM dbos.notifications ORDER BY seq"
    )
    assert [(r["topic"], r["serialization"], json.loads(r["m"])) for r in rows] == [
        ("__null__topic__", "portable_json", {"n": 1}),
        ("news", "portable_json", [1, "two"]),
    ]


async def test_a_message_to_an_unknown_workflow_is_a_foreign_key_violation(
    sql: asyncpg.Connection,
) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=missing) as raised:
        async with sql.transaction():
            await sql.execute("SELECT dbos.send_message($1, '1')", missing)
    assert raised.value.sqlstate == "23503"
    assert await sql.fetchval("SELECT count(*) FROM dbos.notifications") == 0
