"""A serializer written for DBOS 3.x, and DBOS 3.4.0's configuration keys, on real Postgres.

The serializer subclasses ``dbos_async.Serializer`` exactly as DBOS code subclasses
``dbos.Serializer`` (text out, text in, ``name()``); every checkpoint a workflow writes goes
through it, and every row it writes carries its name.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS, DBOSSerializationError, Serializer, SetWorkflowID
from tests.conftest import make_config
from tests.unit.test_config import DBOS_3_4_KEYS


class OrderRefused(Exception):
    """A user error with more than a message in its args."""


_ERRORS: dict[str, type[Exception]] = {"OrderRefused": OrderRefused, "ValueError": ValueError}


class TaggedJson(Serializer):
    """What a DBOS 3.x user writes: JSON text, exceptions as tagged objects."""

    def serialize(self, data: Any) -> str:
        return json.dumps(data, default=self._tag)

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data, object_hook=self._untag)

    def name(self) -> str:
        return "tagged_json"

    @staticmethod
    def _tag(obj: Any) -> Any:
        if isinstance(obj, Exception):
            return {"__error__": type(obj).__name__, "args": list(obj.args)}
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    @staticmethod
    def _untag(obj: dict[str, Any]) -> Any:
        if "__error__" in obj:
            return _ERRORS.get(obj["__error__"], Exception)(*obj["args"])
        return obj


class NotText(TaggedJson):
    """A broken one: serialize() returns bytes."""

    def serialize(self, data: Any) -> str:
        return super().serialize(data).encode()  # type: ignore[return-value]


@DBOS.step()
async def ser_make_order(n: int) -> dict[str, Any]:
    return {"order": n, "items": ["a", "b"]}


@DBOS.step(retries_allowed=False)
async def ser_refuse(n: int) -> None:
    raise OrderRefused(f"order {n}", n)


@DBOS.workflow()
async def ser_checkout(n: int, *, note: str) -> dict[str, Any]:
    order = await ser_make_order(n)
    try:
        await ser_refuse(n)
    except OrderRefused as exc:  # on replay too: the recorded error comes back as OrderRefused
        order["refused"] = list(exc.args)
    await DBOS.set_event_async("order", order)
    await DBOS.write_stream_async("progress", {"step": 1})
    await DBOS.write_stream_async("progress", [2, "two"])
    await DBOS.close_stream_async("progress")
    order["paid"] = await DBOS.recv_async("payment", timeout_seconds=30)
    order["note"] = note
    return order


@DBOS.workflow()
async def ser_doomed(n: int) -> None:
    raise OrderRefused(f"order {n} refused", n)


@DBOS.workflow()
async def ser_echo(value: Any) -> Any:
    return value


@contextlib.asynccontextmanager
async def _launched(database_url: str, serializer: Any) -> AsyncIterator[type[DBOS]]:
    DBOS(config=make_config(database_url, serializer=serializer))
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


@pytest.fixture
async def dbos_tagged(database_url: str) -> AsyncIterator[type[DBOS]]:
    async with _launched(database_url, TaggedJson()) as dbos:
        yield dbos


async def _serializations(database_url: str, workflow_ids: list[str]) -> dict[str, set[str]]:
    """Per table, the serializer names on the rows of these workflows that hold a value."""
    tables = {  # table: (workflow column, a condition that the row holds a value)
        "workflow_status": ("workflow_uuid", "inputs IS NOT NULL"),
        "operation_outputs": ("workflow_uuid", "(output IS NOT NULL OR error IS NOT NULL)"),
        "notifications": ("destination_uuid", "message IS NOT NULL"),
        "workflow_events": ("workflow_uuid", "value IS NOT NULL"),
        "workflow_events_history": ("workflow_uuid", "value IS NOT NULL"),
        "streams": ("workflow_uuid", "value IS NOT NULL"),
    }
    conn = await asyncpg.connect(database_url)
    try:
        found: dict[str, set[str]] = {}
        for table, (column, holds_value) in tables.items():
            rows = await conn.fetch(
                f"SELECT DISTINCT serialization FROM dbos.{table} "
                f"WHERE {column} = ANY($1) AND {holds_value}",
                workflow_ids,
            )
            found[table] = {r["serialization"] for r in rows}
        return found
    finally:
        await conn.close()


async def test_dbos3_serializer_round_trips_every_checkpoint(
    dbos_tagged: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("co-1"):
        handle = await DBOS.start_workflow_async(ser_checkout, 7, note="gift")
    expected_order = {"order": 7, "items": ["a", "b"], "refused": ["order 7", 7]}
    assert await DBOS.get_event_async("co-1", "order", timeout_seconds=30) == expected_order
    assert [v async for v in DBOS.read_stream_async("co-1", "progress", timeout_seconds=30)] == [
        {"step": 1},
        [2, "two"],
    ]
    await DBOS.send_async("co-1", {"amount": 12.5}, "payment")
    assert await handle.get_result() == {
        **expected_order,
        "paid": {"amount": 12.5},
        "note": "gift",
    }

    status = await DBOS.get_workflow_status_async("co-1")
    assert status is not None
    assert status.input == {"args": (7,), "kwargs": {"note": "gift"}}
    steps = await DBOS.list_workflow_steps_async("co-1")
    by_name = {s["function_name"]: s for s in steps}
    assert by_name[ser_make_order.__qualname__]["output"] == {"order": 7, "items": ["a", "b"]}
    refused = by_name[ser_refuse.__qualname__]["error"]
    assert isinstance(refused, OrderRefused) and refused.args == ("order 7", 7)

    with SetWorkflowID("doomed-1"):
        failing = await DBOS.start_workflow_async(ser_doomed, 3)
    with pytest.raises(OrderRefused) as caught:
        await failing.get_result()
    assert caught.value.args == ("order 3 refused", 3)

    # A fork replays the first steps from their rows, then runs the rest.
    start = by_name[ser_refuse.__qualname__]["function_id"] + 1
    fork = await DBOS.fork_workflow_async("co-1", start)
    await DBOS.send_async(fork.workflow_id, "cash", "payment")
    assert await fork.get_result() == {**expected_order, "paid": "cash", "note": "gift"}

    names = await _serializations(database_url, ["co-1", "doomed-1", fork.workflow_id])
    assert names == {table: {"tagged_json"} for table in names}

    conn = await asyncpg.connect(database_url)
    try:
        output = await conn.fetchval(
            "SELECT output FROM dbos.workflow_status WHERE workflow_uuid = 'co-1'"
        )
    finally:
        await conn.close()
    assert json.loads(output.decode()) == {
        **expected_order,
        "paid": {"amount": 12.5},
        "note": "gift",
    }


async def test_a_value_the_serializer_refuses_fails_before_any_write(
    dbos_tagged: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSSerializationError, match="tagged_json"), SetWorkflowID("odd"):
        await DBOS.start_workflow_async(ser_echo, {1, 2})
    assert await DBOS.get_workflow_status_async("odd") is None


async def test_serialize_returning_bytes_is_a_serialization_error(
    database_url: str,
) -> None:
    async with _launched(database_url, NotText()):
        with pytest.raises(DBOSSerializationError, match=r"serialize\(\) returned builtins.bytes"):
            await ser_echo(1)


async def test_duck_typed_dbos3_serializer_works(database_url: str) -> None:
    class Reversed:  # no base class: only the three methods
        def serialize(self, data: Any) -> str:
            return json.dumps(data)[::-1]

        def deserialize(self, serialized_data: str) -> Any:
            return json.loads(serialized_data[::-1])

        def name(self) -> str:
            return "reversed_json"

    async with _launched(database_url, Reversed()):
        with SetWorkflowID("rev"):
            assert await ser_echo({"x": [1, "é"]}) == {"x": [1, "é"]}
        assert (await _serializations(database_url, ["rev"]))["workflow_status"] == {
            "reversed_json"
        }


# -- configuration ---------------------------------------------------------------------------

# Every key of dbos 3.4.0's DBOSConfig, with a value.
EVERY_KEY: dict[str, Any] = {
    "name": "every-key-app",
    "system_database_url": None,  # set from the fixture
    "sys_db_pool_size": 8,
    "sys_db_polling_concurrency": 4,
    "db_engine_kwargs": {"pool_pre_ping": True},
    "sys_db_idle_transaction_timeout_sec": 60.0,
    "log_level": "INFO",
    "otlp_log_level": "INFO",
    "console_log_level": "INFO",
    "otlp_traces_endpoints": ["http://127.0.0.1:4318/v1/traces"],
    "otlp_logs_endpoints": ["http://127.0.0.1:4318/v1/logs"],
    "otlp_attributes": {"team": "payments"},
    "application_version": "v1",
    "executor_id": "every-key-executor",
    "dbos_system_schema": "dbos",
    "enable_otlp": False,
    "system_database_engine": object(),
    "conductor_key": "not-a-real-key",
    "conductor_url": "wss://conductor.example",
    "conductor_executor_metadata": {"region": "eu"},
    "conductor_metadata_only_mode": True,
    "transact_enterprise_key": "not-a-real-key",
    "auto_upgrade": True,
    "auto_upgrade_interval_sec": 30.0,
    "auto_upgrade_grace_sec": 0.0,
    "serializer": TaggedJson(),
    "enable_patching": False,
    "use_listen_notify": True,
    "sharding": False,
    "run_migrations": True,
    "max_executor_threads": 8,
    "notification_listener_polling_interval_sec": 1.0,
    "notification_coalesce_sec": 0.01,
    "observability_query_timeout_sec": 30.0,
    "scheduler_polling_interval_sec": 30.0,
    "kafka_queue_polling_interval_sec": 1.0,
    "otel_attribute_format": "semconv",
}
EFFECTIVE = {
    "name",
    "system_database_url",
    "db_engine_kwargs",
    "sys_db_pool_size",
    "log_level",
    "application_version",
    "executor_id",
    "dbos_system_schema",
    "serializer",
    "max_executor_threads",
    "enable_patching",
}


async def test_every_dbos_3_4_key_runs_an_app_and_each_ineffective_one_warns_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert list(EVERY_KEY) == DBOS_3_4_KEYS
    config = {**EVERY_KEY, "system_database_url": database_url}
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        DBOS(config=config)
        await DBOS.launch_async()
        try:
            with SetWorkflowID("every-key"):
                assert await ser_echo([1, "x"]) == [1, "x"]
        finally:
            await DBOS.destroy_async()
    warned = [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]
    for key in set(EVERY_KEY) - EFFECTIVE:
        assert sum(f"'{key}'" in message for message in warned) == 1, key
    assert not any(f"'{key}'" in message for message in warned for key in EFFECTIVE)
    names = await _serializations(database_url, ["every-key"])
    assert names["workflow_status"] == {"tagged_json"}
