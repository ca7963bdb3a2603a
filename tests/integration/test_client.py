"""``DBOSClient`` beside a launched DBOS in one process, on real Postgres: the client enqueues,
messages, reads events and streams, lists and manages workflows that the engine runs, in its
own context (the engine's workflows and the caller's ``SetWorkflowID`` do not leak into it).

The acceptance tests drive a worker in another process with a client alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSWorkflowFunctionNotFoundError,
    EnqueueOptions,
    Queue,
    SendMessage,
    SetWorkflowID,
)
from dbos_async._core._registry import default_registry
from dbos_async.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSInitializationError,
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
)
from tests.waypoints import Waypoints

waypoints = Waypoints()
client_queue = Queue("client_declared")
default_registry.queues.pop(client_queue.name, None)  # registered only for this module's tests


@pytest.fixture(autouse=True)
def _module_state() -> Iterator[None]:
    waypoints.clear()
    default_registry.add_queue(client_queue)
    yield
    default_registry.queues.pop(client_queue.name, None)


@pytest.fixture
async def client(dbos: type[DBOS], database_url: str) -> AsyncIterator[DBOSClient]:
    async with DBOSClient(database_url, application_name="test-app") as opened:
        yield opened


@DBOS.workflow()
async def cl_double(x: int) -> int:
    return 2 * x


@DBOS.workflow()
async def cl_conversation(greeting: str) -> str:
    await DBOS.set_event_async("greeted", greeting)
    for i in range(3):
        await DBOS.write_stream_async("numbers", i)
    await DBOS.close_stream_async("numbers")
    reply = await DBOS.recv_async("reply", timeout_seconds=30)
    return f"{greeting} -> {reply}"


@DBOS.workflow()
async def cl_blocked() -> str:
    await cl_gate()
    return "released"


@DBOS.step()
async def cl_gate() -> None:
    waypoints.passed("blocked")
    await waypoints.gate("blocked").wait()


def _options(name: str, queue: str = "client_declared", **more: Any) -> EnqueueOptions:
    options: EnqueueOptions = {"workflow_name": name, "queue_name": queue}
    options.update(more)  # type: ignore[typeddict-item]
    return options


async def test_enqueue_and_await_a_result(client: DBOSClient) -> None:
    handle = await client.enqueue_async(_options("cl_double", workflow_id="client-1"), 21)
    assert handle.workflow_id == "client-1"
    notifier = handle._runtime.notifier
    assert notifier.connections_made == 0  # the LISTEN connection opens on the first wait
    assert await handle.get_result() == 42
    assert notifier.connections_made == 1
    status = await handle.get_status()
    assert status is not None and status.queue_name == "client_declared"
    again = await client.retrieve_workflow_async("client-1")
    assert await again.get_result() == 42
    with pytest.raises(DBOSNonExistentWorkflowError):
        await client.retrieve_workflow_async("client-nobody")


async def test_messages_events_and_streams(client: DBOSClient) -> None:
    handle = await client.enqueue_async(_options("cl_conversation"), "hello")
    assert await client.get_event_async(handle.workflow_id, "greeted", 10) == "hello"
    numbers = [v async for v in client.read_stream_async(handle.workflow_id, "numbers")]
    assert numbers == [0, 1, 2]
    assert await client.read_stream_offset_async(handle.workflow_id, "numbers", 1) == 1
    await client.send_async(handle.workflow_id, "hi back", "reply")
    assert await handle.get_result() == "hello -> hi back"
    other = await client.enqueue_async(_options("cl_conversation"), "bulk")
    await client.send_bulk_async([SendMessage(other.workflow_id, "in bulk", "reply")])
    assert await other.get_result() == "bulk -> in bulk"


async def test_the_callers_workflow_context_does_not_leak_into_the_client(
    client: DBOSClient,
) -> None:
    with SetWorkflowID("meant-for-dbos"):
        handle = await client.enqueue_async(_options("cl_double"), 1)
        assert handle.workflow_id != "meant-for-dbos"
        assert await DBOS.start_workflow_async(cl_double, 2) is not None
    assert await DBOS.retrieve_workflow_async("meant-for-dbos") is not None


async def test_management_and_listings(client: DBOSClient) -> None:
    blocked = await client.enqueue_async(_options("cl_blocked", workflow_id="cl-blocked"))
    await waypoints.reached("blocked")
    listed = await client.list_workflows_async(workflow_ids=["cl-blocked"])
    assert [s.status for s in listed] == ["PENDING"]
    queued = await client.list_queued_workflows_async(queue_name="client_declared")
    assert [s.workflow_id for s in queued] == ["cl-blocked"]
    await client.cancel_workflow_async("cl-blocked")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await blocked.get_result()
    resumed = await client.resume_workflow_async("cl-blocked")
    await waypoints.reached("blocked")
    waypoints.gate("blocked").set()
    assert await resumed.get_result() == "released"
    steps = await client.list_workflow_steps_async("cl-blocked")
    assert [s["function_name"] for s in steps][-1].endswith("cl_gate")
    fork = await client.fork_workflow_async("cl-blocked", 1)
    assert await fork.get_result() == "released"
    await client.update_workflow_attributes_async("cl-blocked", {"seen": True})
    [status] = await client.list_workflows_async(workflow_ids=["cl-blocked"])
    assert status.attributes == {"seen": True}
    await client.delete_workflow_async(fork.workflow_id)
    assert await client.list_workflows_async(workflow_ids=[fork.workflow_id]) == []


async def test_registered_queues_through_the_client(client: DBOSClient) -> None:
    queue = await client.register_queue_async("client_registered", worker_concurrency=2)
    assert queue.worker_concurrency == 2
    # The launched engine sees the new queue (by notification) and runs its work.
    handle = await client.enqueue_async(_options("cl_double", "client_registered"), 5)
    assert await handle.get_result() == 10
    assert [q.name for q in await client.list_queues_async()] == ["client_registered"]
    found = await client.retrieve_queue_async("client_registered")
    assert found is not None
    await client.delete_queue_async("client_registered")
    assert await client.retrieve_queue_async("client_registered") is None


async def test_names_and_options_are_checked_before_anything_is_written(
    client: DBOSClient, database_url: str
) -> None:
    with pytest.raises(DBOSWorkflowFunctionNotFoundError):
        await client.enqueue_async(_options("cl_nonexistent"))
    with pytest.raises(DBOSQueueNotFoundError):
        await client.enqueue_async(_options("cl_double", "no_such_queue"), 1)
    with pytest.raises(DBOSInvalidArgumentError):
        await client.enqueue_async(_options("cl_double", priority=0), 1)
    with pytest.raises(DBOSInvalidArgumentError):
        await client.enqueue_async({"workflow_name": "cl_double"}, 1)  # type: ignore[typeddict-item]
    with pytest.raises(DBOSInvalidArgumentError):
        await client.send_async("", "x")
    with pytest.raises(DBOSNonExistentWorkflowError):
        await client.send_async("nobody-here", "x")
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM dbos.workflow_status") == 0
        assert await conn.fetchval("SELECT count(*) FROM dbos.notifications") == 0
    finally:
        await conn.close()


def test_the_sync_forms(dbos_sync: type[DBOS], database_url: str) -> None:
    with DBOSClient(database_url, application_name="test-app") as client:
        handle = client.enqueue(_options("cl_double"), 4)
        assert handle.get_result() == 8
        assert client.retrieve_workflow(handle.workflow_id).get_status() is not None
        assert [s.workflow_id for s in client.list_workflows()] == [handle.workflow_id]
        convo = client.enqueue(_options("cl_conversation"), "sync")
        assert client.get_event(convo.workflow_id, "greeted", 10) == "sync"
        assert list(client.read_stream(convo.workflow_id, "numbers")) == [0, 1, 2]
        client.send(convo.workflow_id, "ok", "reply")
        assert convo.get_result() == "sync -> ok"
        assert client.wait_first([handle, convo]) in (handle, convo)


async def test_a_client_needs_a_migrated_database(admin_url: str) -> None:
    client = DBOSClient(admin_url, dbos_system_schema="nothing_here", lazy=True)
    try:
        with pytest.raises(DBOSInitializationError, match="no dbos_async tables"):
            await client.check_connection_async()
    finally:
        await client.destroy_async()


def test_a_client_that_cannot_check_its_database_leaves_nothing_open(admin_url: str) -> None:
    with pytest.raises(DBOSInitializationError, match="no dbos_async tables"):
        DBOSClient(admin_url, dbos_system_schema="nothing_here")  # checks at once, then closes


# In the caller's own transaction ---------------------------------------------------------------


@DBOS.workflow()
async def cl_receive() -> Any:
    return await DBOS.recv_async("outbox", timeout_seconds=30)


async def _exists(database_url: str, workflow_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = $1)",
                workflow_id,
            )
        )
    finally:
        await conn.close()


class _Rollback(Exception):
    pass


async def test_enqueue_in_an_asyncpg_transaction_commits_or_rolls_back_with_it(
    client: DBOSClient, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(_Rollback):
            async with conn.transaction():
                await client.enqueue_in_transaction_async(
                    conn, _options("cl_double", workflow_id="tx-rolled-back"), 1
                )
                raise _Rollback
        assert not await _exists(database_url, "tx-rolled-back")
        async with conn.transaction():
            handle = await client.enqueue_in_transaction_async(
                conn, _options("cl_double", workflow_id="tx-committed", deduplication_id="d"), 2
            )
            assert not await _exists(database_url, "tx-committed")  # not before the commit
        assert await handle.get_result() == 4
        with pytest.raises(DBOSInvalidArgumentError, match="not in a transaction"):
            await client.enqueue_in_transaction_async(conn, _options("cl_double"), 3)
        blocker = await client.enqueue_async(
            _options("cl_blocked", workflow_id="tx-holder", deduplication_id="taken")
        )
        await waypoints.reached("blocked")
        with pytest.raises(DBOSQueueDeduplicatedError):
            async with conn.transaction():
                await client.enqueue_in_transaction_async(
                    conn, _options("cl_double", deduplication_id="taken"), 5
                )
        waypoints.gate("blocked").set()
        assert await blocker.get_result() == "released"
    finally:
        await conn.close()


async def test_send_in_an_asyncpg_transaction(client: DBOSClient, database_url: str) -> None:
    receiver = await client.enqueue_async(_options("cl_receive", workflow_id="tx-receiver"))
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(_Rollback):
            async with conn.transaction():
                await client.send_in_transaction_async(conn, "tx-receiver", "lost", "outbox")
                raise _Rollback
        async with conn.transaction():
            await client.send_in_transaction_async(conn, "tx-receiver", "kept", "outbox")
        assert await receiver.get_result() == "kept"
        with pytest.raises(DBOSNonExistentWorkflowError):
            async with conn.transaction():
                await client.send_bulk_in_transaction_async(
                    conn, [SendMessage("tx-nobody", 1, "outbox")]
                )
    finally:
        await conn.close()


async def test_enqueue_in_an_async_sqlalchemy_transaction(
    client: DBOSClient, database_url: str
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            handle = await client.enqueue_in_transaction_async(conn, _options("cl_double"), 6)
        assert await handle.get_result() == 12
    finally:
        await engine.dispose()


def test_enqueue_and_send_in_a_sqlalchemy_session(dbos_sync: type[DBOS], database_url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with DBOSClient(database_url, application_name="test-app") as client:
            with Session(engine) as session, session.begin():
                handle = client.enqueue_in_transaction(session, _options("cl_double"), 7)
                receiver = client.enqueue_in_transaction(session, _options("cl_receive"))
                client.send_in_transaction(
                    session, receiver.workflow_id, "from a session", "outbox"
                )
            assert handle.get_result() == 14
            assert receiver.get_result() == "from a session"
            with pytest.raises(_Rollback), Session(engine) as session, session.begin():
                rolled = client.enqueue_in_transaction(session, _options("cl_double"), 8)
                raise _Rollback
            assert client.list_workflows(workflow_ids=[rolled.workflow_id]) == []
    finally:
        engine.dispose()


async def test_rename_application_moves_its_rows(client: DBOSClient, database_url: str) -> None:
    first = await client.enqueue_async(_options("cl_double"), 1)
    await first.get_result()
    second = await client.enqueue_async(_options("cl_double"), 2)
    await second.get_result()
    await client.register_queue_async("client_renamed_queue")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE dbos.workflow_status SET application_name = NULL WHERE workflow_uuid = $1",
            second.workflow_id,
        )
    finally:
        await conn.close()
    moved = await client.rename_application_async("test-app", "shop", batch_size=1)
    assert (moved["workflows"], moved["queues"]) == (1, 1)
    in_shop = await client.list_workflows_async(application_name="shop")
    assert {s.workflow_id for s in in_shop} == {first.workflow_id, second.workflow_id}
    adopted = await client.rename_application_async(None, "shop", adopt_unclaimed_rows=True)
    assert adopted["workflows"] == 1
    [status] = await client.list_workflows_async(
        workflow_ids=[second.workflow_id], application_name="shop"
    )
    assert status.application_name == "shop"
    with pytest.raises(DBOSInvalidArgumentError, match="adopt_unclaimed_rows"):
        await client.rename_application_async(None, "shop")
    await client.rename_application_async("shop", "test-app")


class _HeldConnect:
    """``connect_database`` for a client, held at a gate until the test opens it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dbos_async._facade import _client

        self.connecting, self.gate = asyncio.Event(), asyncio.Event()
        self.made: list[Any] = []
        real = _client.connect_database  # type: ignore[attr-defined]

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.connecting.set()
            await self.gate.wait()
            database = await real(*args, **kwargs)
            self.made.append(database)
            return database

        monkeypatch.setattr(_client, "connect_database", held)


async def test_a_client_opener_that_gives_up_does_not_fail_the_others(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls open a client at once; the first is cancelled while it connects: the second
    still gets an open client (it got the first one's CancelledError)."""
    held = _HeldConnect(monkeypatch)
    client = DBOSClient(system_database_url=database_url)
    try:
        async with asyncio.timeout(20):
            first = asyncio.ensure_future(client.list_workflows_async(limit=1))
            await held.connecting.wait()
            second = asyncio.ensure_future(client.list_workflows_async(limit=1))
            await asyncio.sleep(0)  # (the second waits for the first's opening)
            first.cancel()
            held.gate.set()
            assert await second == []
            assert first.cancelled()
    finally:
        await client.destroy_async()


async def test_a_client_destroyed_while_it_opens_stays_closed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``destroy_async`` while the first call is still connecting: the call fails and the
    connections it opened are closed (they stayed open, and the destroyed client worked)."""
    held = _HeldConnect(monkeypatch)
    client = DBOSClient(system_database_url=database_url)
    async with asyncio.timeout(20):
        call = asyncio.ensure_future(client.list_workflows_async(limit=1))
        await held.connecting.wait()
        await client.destroy_async()
        held.gate.set()
        with pytest.raises(DBOSInvalidArgumentError, match="destroyed"):
            await call
    assert [database._closed for database in held.made] == [True]
