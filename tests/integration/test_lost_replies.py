"""A statement that committed but whose reply was lost is retried without a second effect.

When a connection dies between Postgres committing a statement and the client reading the
reply, the client cannot know whether it took effect, and sends it again. No test can make a
real server lose exactly that reply, so here the engine's database layer is wrapped: the first
time a chosen statement runs, it runs for real (and commits), then the call fails as a lost
connection does (``ConnectionDoesNotExistError``). The engine's retry then meets its own
earlier write, and each test checks that the workflow still completes, with every checkpoint,
message, event and stream value recorded once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS, Queue, SetWorkflowID
from dbos_async._core._registry import default_registry
from dbos_async._sysdb import Database
from tests.conftest import make_config

lossy_queue = Queue("lossy_queue")
default_registry.queues.pop(lossy_queue.name, None)  # registered only for this module's tests


class LostReplies:
    """Makes the first run of statements containing ``marker`` lose their reply (after commit),
    or, with ``error``, fail with it without running."""

    def __init__(self) -> None:
        self.marker: str | None = None
        self.remaining = 0
        self.error: Exception | None = None
        self.lost: list[str] = []

    def arm(self, marker: str, times: int = 1, error: Exception | None = None) -> None:
        self.marker, self.remaining, self.error = marker, times, error

    def wrap(self, run: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        faults = self

        def lossy_run(
            db: Database, method: str, sql: str, args: tuple[Any, ...], *, generic: bool = False
        ) -> Any:
            if faults.marker is None or faults.marker not in sql or faults.remaining <= 0:
                return run(db, method, sql, args, generic=generic)
            faults.remaining -= 1
            first = True

            async def body(conn: asyncpg.Connection) -> Any:
                nonlocal first
                if first and faults.error is not None:
                    first = False
                    faults.lost.append(sql)
                    raise faults.error
                result = await getattr(conn, method)(sql, *args)
                if first:
                    first = False
                    faults.lost.append(sql)
                    raise asyncpg.ConnectionDoesNotExistError("the reply was lost")
                return result

            return db._attempts(body, keep=True, generic=generic)

        return lossy_run


@pytest.fixture
async def lost(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LostReplies]:
    faults = LostReplies()
    monkeypatch.setattr(Database, "_run", faults.wrap(Database._run))
    default_registry.add_queue(lossy_queue)
    DBOS(
        config=make_config(
            database_url,
            executor_heartbeat_interval_sec=0.2,
            executor_adoption_timeout_sec=1.0,
        )
    )
    await DBOS.launch_async()
    try:
        yield faults
    finally:
        await DBOS.destroy_async()
        default_registry.queues.pop(lossy_queue.name, None)


@DBOS.step()
async def lossy_double(x: int) -> int:
    return 2 * x


@DBOS.workflow()
async def doubled_twice(x: int) -> int:
    return await lossy_double(await lossy_double(x))


@DBOS.workflow()
async def lossy_talker(peer: str) -> object:
    await DBOS.send_async(peer, "ping", "t")
    await DBOS.set_event_async("said", "ping")
    await DBOS.write_stream_async("out", 1)
    await DBOS.close_stream_async("out")
    return await DBOS.recv_async("reply", timeout_seconds=30)


@DBOS.workflow()
async def lossy_listener() -> object:
    return await DBOS.recv_async("t", timeout_seconds=30)


async def _operations(workflow_id: str) -> list[str]:
    return [step["function_name"] for step in await DBOS.list_workflow_steps_async(workflow_id)]


@pytest.mark.parametrize(
    "marker",
    [
        "INSERT INTO workflow_status",  # the start
        "INSERT INTO operation_outputs (\n    workflow_uuid",  # a step's checkpoint
        "completed_at = $5",  # the outcome
    ],
)
async def test_a_workflows_own_writes(lost: LostReplies, marker: str) -> None:
    lost.arm(marker)
    with SetWorkflowID(f"twice-{len(marker)}"):
        handle = await DBOS.start_workflow_async(doubled_twice, 5)
    async with asyncio.timeout(20):
        assert await handle.get_result() == 20
    assert len(lost.lost) == 1
    assert await _operations(handle.workflow_id) == ["lossy_double", "lossy_double"]
    status = await handle.get_status()
    assert status is not None and status.status == "SUCCESS"


@pytest.mark.parametrize(
    "marker", ["'DBOS.send'", "'DBOS.setEvent'", "INSERT INTO streams", "'DBOS.recv'"]
)
async def test_messages_events_and_streams(lost: LostReplies, marker: str) -> None:
    peer = await DBOS.start_workflow_async(lossy_listener)
    lost.arm(marker)
    handle = await DBOS.start_workflow_async(lossy_talker, peer.workflow_id)
    async with asyncio.timeout(20):
        assert await peer.get_result() == "ping"
        await DBOS.send_async(handle.workflow_id, "pong", "reply")
        assert await handle.get_result() == "pong"
    assert len(lost.lost) == 1
    operations = await _operations(handle.workflow_id)
    assert operations[:5] == [
        "DBOS.send",
        "DBOS.setEvent",
        "DBOS.writeStream",
        "DBOS.closeStream",
        "DBOS.recv",
    ]
    assert operations[5:] in ([], ["DBOS.sleep"])  # the recv's timeout, if it had to wait
    assert [v async for v in DBOS.read_stream_async(handle.workflow_id, "out")] == [1]
    assert await DBOS.get_all_events_async(handle.workflow_id) == {"said": "ping"}
    messages = await DBOS.list_workflow_steps_async(peer.workflow_id)
    assert [m["output"] for m in messages if m["function_name"] == "DBOS.recv"] == ["ping"]


async def test_a_claim_whose_reply_was_lost_is_given_back_to_its_queue(
    lost: LostReplies,
) -> None:
    """The claimed workflow is PENDING here but never started: the heartbeat finds it."""
    lost.arm("FOR UPDATE SKIP LOCKED")
    handle = await lossy_queue.enqueue_async(doubled_twice, 1)
    async with asyncio.timeout(20):
        assert await handle.get_result() == 4
    assert len(lost.lost) == 1


async def test_an_unexpected_error_of_the_system_database_is_not_an_outcome(
    lost: LostReplies,
) -> None:
    """Not a lost connection but an error the engine did not expect (a bug, a broken
    statement): the workflow is not failed with it; it stays PENDING and runs again."""
    lost.arm(
        "INSERT INTO operation_outputs (\n    workflow_uuid",
        error=asyncpg.PostgresSyntaxError("an engine bug"),
    )
    handle = await DBOS.start_workflow_async(doubled_twice, 3)
    async with asyncio.timeout(20):
        assert await handle.get_result() == 12
    assert len(lost.lost) == 1
    assert await _operations(handle.workflow_id) == ["lossy_double", "lossy_double"]
