"""Portable JSON on real Postgres, with DBOS 3.4.0's semantics.

A workflow declared ``serialization_type=WorkflowSerializationFormat.PORTABLE`` records its
inputs (``{"positionalArgs", "namedArgs"}``), output and error as JSON, readable from SQL with
``convert_from(column, 'UTF8')::jsonb``; messages, events and stream values sent, set or written
as portable are stored the same way; errors come back as ``PortableWorkflowError``. Runs from a
portable row (dequeued, forked) get ``datetime``, ``date`` and ``Decimal`` arguments back by the
function's type hints, unless the workflow has ``validate_args``. Bad input is refused before
anything is written; msgpack stays the default.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSInvalidArgumentError,
    DBOSPortableJSONSerializer,
    DBOSSerializationError,
    PortableWorkflowError,
    Queue,
    SendMessage,
    SetWorkflowID,
    WorkflowSerializationFormat,
)
from dbos_async._core._registry import default_registry
from tests.conftest import make_config
from tests.waypoints import Waypoints

PORTABLE = WorkflowSerializationFormat.PORTABLE
RESULT_TIMEOUT_SECONDS = 20.0
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
DAY = dt.date(2024, 5, 6)

waypoints = Waypoints()
received: list[Any] = []

queue = Queue("portable_q")
default_registry.queues.pop(queue.name, None)  # registered only while this module runs


@pytest.fixture(scope="module", autouse=True)
def _module_queue() -> Iterator[None]:
    default_registry.add_queue(queue)
    yield
    default_registry.queues.pop(queue.name, None)


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()
    received.clear()


@DBOS.workflow(serialization_type=PORTABLE)
async def portable_echo(count: int, when: dt.datetime, *, tag: str) -> dict[str, Any]:
    return {"count": count, "when": when, "tag": tag, "items": (1, 2)}


class Refused(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
        self.details = {"retry": False}


@DBOS.workflow(serialization_type=PORTABLE)
async def portable_fail(message: str) -> None:
    raise Refused(message, 409)


@DBOS.workflow(serialization_type=PORTABLE)
async def portable_fail_as(name: str) -> None:
    raise PortableWorkflowError("failed elsewhere", name, "E42", [1, "two"])


@DBOS.workflow(serialization_type=PORTABLE)
async def portable_typed(when: dt.datetime, day: dt.date, *, amount: decimal.Decimal) -> str:
    received.append((when, day, amount))
    return f"{type(when).__name__} {type(day).__name__} {type(amount).__name__}"


def _keep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


@DBOS.workflow(serialization_type=PORTABLE, validate_args=_keep)
async def portable_validated(when: dt.datetime) -> str:
    received.append(when)
    return type(when).__name__


@DBOS.workflow(serialization_type=PORTABLE)
async def portable_publisher(value: Any) -> None:
    # Inside a portable workflow, what it sets and writes is portable by default.
    await DBOS.set_event_async("default", value)
    await DBOS.write_stream_async("values", value)
    await DBOS.close_stream_async("values")


@DBOS.workflow()
async def portable_explicit_publisher(value: Any) -> None:
    await DBOS.set_event_async("portable", value, serialization_type=PORTABLE)
    await DBOS.set_event_async("native", value)
    await DBOS.write_stream_async("values", value, serialization_type=PORTABLE)
    await DBOS.write_stream_async("values", value)
    await DBOS.close_stream_async("values")


@DBOS.workflow()
async def portable_receiver(topic: str) -> Any:
    waypoints.passed("receiving")
    return await DBOS.recv_async(topic, timeout_seconds=RESULT_TIMEOUT_SECONDS)


@DBOS.workflow()
def portable_sync_publisher(value: Any) -> None:
    DBOS.set_event("sync", value, serialization_type=PORTABLE)
    DBOS.write_stream("sync", value, serialization_type=PORTABLE)


async def _rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "dbos"})
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _count(database_url: str, table: str) -> int:
    rows = await _rows(database_url, f"SELECT count(*) AS n FROM {table}")
    return int(rows[0]["n"])


async def _workflow_row(database_url: str, workflow_id: str) -> asyncpg.Record:
    rows = await _rows(
        database_url,
        """
        SELECT serialization, convert_from(inputs, 'UTF8')::jsonb AS inputs,
               convert_from(output, 'UTF8')::jsonb AS output,
               convert_from(error, 'UTF8')::jsonb AS error
        FROM workflow_status WHERE workflow_uuid = $1
        """,
        workflow_id,
    )
    return rows[0]


def _json(text: str | None) -> Any:
    """A jsonb column as asyncpg returns it (text), parsed."""
    return None if text is None else json.loads(text)


# A workflow declared portable ------------------------------------------------------------


async def test_a_portable_workflow_records_inputs_and_output_as_json(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_echo, 3, WHEN, tag="x")
    result = await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    assert result == {"count": 3, "when": WHEN, "tag": "x", "items": (1, 2)}  # this run's value

    row = await _workflow_row(database_url, handle.workflow_id)
    assert row["serialization"] == "portable_json"
    assert _json(row["inputs"]) == {
        "positionalArgs": [3, "2024-05-06T07:08:09.123Z"],
        "namedArgs": {"tag": "x"},
    }
    assert _json(row["output"]) == {
        "count": 3,
        "when": "2024-05-06T07:08:09.123Z",
        "tag": "x",
        "items": [1, 2],
    }
    # Read back from the row: JSON's types.
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None
    assert status.input == {"args": (3, "2024-05-06T07:08:09.123Z"), "kwargs": {"tag": "x"}}
    assert status.output == _json(row["output"])
    assert await DBOS.get_result_async(handle.workflow_id) == _json(row["output"])


async def test_a_portable_workflows_error_is_read_back_as_a_portable_workflow_error(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_fail, "no room")
    with pytest.raises(Refused):  # this run raises its own exception
        await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)

    row = await _workflow_row(database_url, handle.workflow_id)
    assert _json(row["error"]) == {
        "name": "Refused",
        "message": "no room",
        "code": 409,
        "data": {"retry": False},
    }
    with pytest.raises(PortableWorkflowError) as raised:
        await DBOS.get_result_async(handle.workflow_id)
    error = raised.value
    assert (error.name, error.message, error.code, error.data) == (
        "Refused",
        "no room",
        409,
        {"retry": False},
    )
    assert str(error) == "no room"
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None and isinstance(status.error, PortableWorkflowError)


async def test_a_raised_portable_workflow_error_keeps_its_name_code_and_data(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_fail_as, "RemoteError")
    with pytest.raises(PortableWorkflowError):
        await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    row = await _workflow_row(database_url, handle.workflow_id)
    assert _json(row["error"]) == {
        "name": "RemoteError",
        "message": "failed elsewhere",
        "code": "E42",
        "data": [1, "two"],
    }


async def test_arguments_without_a_portable_form_are_refused_before_anything_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSSerializationError):
        await DBOS.start_workflow_async(portable_echo, 3, uuid.uuid4(), tag="x")
    with pytest.raises(DBOSSerializationError):
        await queue.enqueue_async(portable_echo, 3, WHEN, tag=b"bytes")
    with pytest.raises(DBOSSerializationError):
        await portable_echo(3, WHEN, tag={1: "a non-string key"})  # type: ignore[arg-type]
    assert await _count(database_url, "workflow_status") == 0


def test_an_unknown_serialization_type_is_refused_at_declaration() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="serialization_type"):
        DBOS.workflow(serialization_type="json")  # type: ignore[arg-type]


async def test_portable_inputs_get_their_types_back_from_the_hints_when_dequeued(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await queue.enqueue_async(portable_typed, WHEN, DAY, amount=decimal.Decimal("12.50"))
    result = await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    assert result == "datetime date Decimal"
    assert received == [(WHEN, DAY, decimal.Decimal("12.50"))]
    row = await _workflow_row(database_url, handle.workflow_id)
    assert _json(row["inputs"]) == {
        "positionalArgs": ["2024-05-06T07:08:09.123Z", "2024-05-06"],
        "namedArgs": {"amount": "12.50"},
    }


async def test_validate_args_gets_the_recorded_json_unconverted(dbos: type[DBOS]) -> None:
    handle = await queue.enqueue_async(portable_validated, WHEN)
    result = await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    assert result == "str"
    assert received == ["2024-05-06T07:08:09.123Z"]


async def test_a_fork_of_a_portable_workflow_reads_its_portable_inputs(
    dbos: type[DBOS], database_url: str
) -> None:
    original = await DBOS.start_workflow_async(portable_typed, WHEN, DAY, amount=decimal.Decimal(1))
    await asyncio.wait_for(original.get_result(), RESULT_TIMEOUT_SECONDS)
    forked = await DBOS.fork_workflow_async(original.workflow_id, 1)
    assert await asyncio.wait_for(forked.get_result(), RESULT_TIMEOUT_SECONDS) == (
        "datetime date Decimal"
    )
    row = await _workflow_row(database_url, forked.workflow_id)
    assert row["serialization"] == "portable_json"
    assert _json(row["output"]) == "datetime date Decimal"


# Values sent, set and written as portable ------------------------------------------------


async def test_a_message_sent_as_portable_is_json_in_the_table_and_received_as_json(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_receiver, "greeting")
    await waypoints.reached("receiving")
    message = {"day": DAY, "amount": decimal.Decimal("0.5"), "tags": {"a"}}
    await DBOS.send_async(handle.workflow_id, message, "greeting", serialization_type=PORTABLE)
    expected = {"day": "2024-05-06", "amount": "0.5", "tags": ["a"]}
    assert await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS) == expected
    rows = await _rows(
        database_url,
        "SELECT serialization, convert_from(message, 'UTF8')::jsonb AS m FROM notifications",
    )
    assert [(r["serialization"], _json(r["m"])) for r in rows] == [("portable_json", expected)]


async def test_send_bulk_as_portable(dbos: type[DBOS], database_url: str) -> None:
    first = await DBOS.start_workflow_async(portable_receiver, "bulk")
    second = await DBOS.start_workflow_async(portable_receiver, "bulk")
    await waypoints.reached("receiving", times=2)
    await DBOS.send_bulk_async(
        [SendMessage(first.workflow_id, [1], "bulk"), SendMessage(second.workflow_id, [2], "bulk")],
        serialization_type=PORTABLE,
    )
    assert await asyncio.wait_for(first.get_result(), RESULT_TIMEOUT_SECONDS) == [1]
    assert await asyncio.wait_for(second.get_result(), RESULT_TIMEOUT_SECONDS) == [2]
    rows = await _rows(database_url, "SELECT DISTINCT serialization FROM notifications")
    assert [r["serialization"] for r in rows] == ["portable_json"]


async def test_events_and_stream_values_set_as_portable(
    dbos: type[DBOS], database_url: str
) -> None:
    value = {"when": WHEN, "n": [1, 2]}
    as_json = {"when": "2024-05-06T07:08:09.123Z", "n": [1, 2]}
    handle = await DBOS.start_workflow_async(portable_explicit_publisher, value)
    await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)

    assert await DBOS.get_event_async(handle.workflow_id, "portable", 0) == as_json
    assert await DBOS.get_event_async(handle.workflow_id, "native", 0) == value  # msgpack
    read = [v async for v in DBOS.read_stream_async(handle.workflow_id, "values")]
    assert read == [as_json, value]

    events = await _rows(
        database_url, "SELECT key, serialization FROM workflow_events ORDER BY key"
    )
    assert [(r["key"], r["serialization"]) for r in events] == [
        ("native", "msgpack"),
        ("portable", "portable_json"),
    ]
    portable = await _rows(
        database_url,
        "SELECT convert_from(value, 'UTF8')::jsonb AS v FROM workflow_events "
        "WHERE serialization = 'portable_json' "
        "UNION ALL SELECT convert_from(value, 'UTF8')::jsonb FROM streams "
        "WHERE serialization = 'portable_json'",
    )
    assert [_json(r["v"]) for r in portable] == [as_json, as_json]


async def test_a_portable_workflow_sets_and_writes_portable_by_default(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_publisher, [DAY])
    await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)
    assert await DBOS.get_event_async(handle.workflow_id, "default", 0) == ["2024-05-06"]
    read = [v async for v in DBOS.read_stream_async(handle.workflow_id, "values")]
    assert read == [["2024-05-06"]]
    rows = await _rows(
        database_url,
        "SELECT serialization FROM workflow_events UNION ALL "
        "SELECT serialization FROM streams WHERE value IS NOT NULL",
    )
    assert [r["serialization"] for r in rows] == ["portable_json", "portable_json"]


async def test_bad_values_and_unknown_formats_are_refused_before_anything_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(portable_receiver, "never")
    await waypoints.reached("receiving")
    with pytest.raises(DBOSSerializationError):
        await DBOS.send_async(handle.workflow_id, object(), "never", serialization_type=PORTABLE)
    with pytest.raises(DBOSSerializationError):
        await DBOS.send_async(handle.workflow_id, float("nan"), serialization_type=PORTABLE)
    with pytest.raises(DBOSInvalidArgumentError, match="serialization_type"):
        await DBOS.send_async(handle.workflow_id, 1, serialization_type="yaml")  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError, match="serialization_type"):
        await DBOS.send_bulk_async(
            [SendMessage(handle.workflow_id, 1)],
            serialization_type="yaml",  # type: ignore[arg-type]
        )
    assert await _count(database_url, "notifications") == 0
    await DBOS.send_async(handle.workflow_id, "done", "never")
    assert await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS) == "done"


async def test_native_and_default_stay_msgpack(dbos: type[DBOS], database_url: str) -> None:
    handle = await DBOS.start_workflow_async(portable_receiver, "native")
    await waypoints.reached("receiving")
    await DBOS.send_async(
        handle.workflow_id,
        uuid.UUID(int=7),
        "native",
        serialization_type=WorkflowSerializationFormat.NATIVE,
    )
    assert await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS) == uuid.UUID(int=7)
    rows = await _rows(database_url, "SELECT serialization FROM notifications")
    assert [r["serialization"] for r in rows] == ["msgpack"]
    workflow_rows = await _rows(database_url, "SELECT DISTINCT serialization FROM workflow_status")
    assert [r["serialization"] for r in workflow_rows] == ["msgpack"]


def test_sync_forms_take_serialization_type(dbos_sync: type[DBOS], database_url: str) -> None:
    workflow_id = str(uuid.uuid4())
    with SetWorkflowID(workflow_id):
        portable_sync_publisher({"day": DAY})
    assert DBOS.get_event(workflow_id, "sync", 0) == {"day": "2024-05-06"}
    rows = asyncio.run(
        _rows(
            database_url,
            "SELECT serialization FROM workflow_events UNION ALL SELECT serialization FROM streams",
        )
    )
    assert [r["serialization"] for r in rows] == ["portable_json", "portable_json"]


# Portable JSON as the configured serializer ----------------------------------------------


@DBOS.workflow()
async def portable_configured(when: dt.datetime) -> str:
    return type(when).__name__


async def test_portable_json_as_the_configured_serializer(database_url: str) -> None:
    DBOS(config=make_config(database_url, serializer=DBOSPortableJSONSerializer()))
    await DBOS.launch_async()
    try:
        handle = await queue.enqueue_async(portable_configured, WHEN)
        assert await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS) == "datetime"
        row = await _workflow_row(database_url, handle.workflow_id)
        assert row["serialization"] == "portable_json"
        assert _json(row["inputs"]) == {
            "positionalArgs": ["2024-05-06T07:08:09.123Z"],
            "namedArgs": {},
        }
        assert _json(row["output"]) == "datetime"
    finally:
        await DBOS.destroy_async()
