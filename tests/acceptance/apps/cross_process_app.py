"""Process B of the cross-process acceptance tests: runs workflows that another process talks to.

Run as ``python cross_process_app.py <mode>``. Every mode launches DBOS (executor
``APP_EXECUTOR_ID``, version ``APP_VERSION``) on ``APP_DB_URL``, starts its workflow(s), prints
``READY ...`` once they are blocked where the test expects them, and then prints what awaiting
them gave:

* ``recv``: one workflow (``APP_WORKFLOW_ID``) waits in ``recv(topic="greeting")``;
  prints ``RESULT <repr of the message>``.
* ``event``: one workflow waits in ``recv(topic="question")`` and then sets the event
  ``"answer"`` to ``{"reply_to": <message>}``; prints ``RESULT <repr of the message>``.
* ``sleep``: one workflow sleeps durably for 60 s; prints ``CANCELLED <error class>`` when
  awaiting it raises ``DBOSAwaitedWorkflowCancelledError`` (``RESULT`` if it ever returns).
* ``durable-start`` / ``durable-recover``: one workflow records ``time.time()`` in a step,
  sleeps ``APP_SLEEP_SECONDS`` durably and returns ``{"started": ..., "woke": ...}``.
  ``durable-start`` prints ``READY <workflow_id>`` once the sleep's wake-up time is recorded
  and blocks (the test kills it); ``durable-recover`` launches (which recovers the workflow) and
  prints ``RESULT <repr>``.
* ``many``: ``APP_COUNT`` workflows (``<APP_WORKFLOW_ID>-<i>``) wait in ``recv()``; prints
  ``READY <pid of the LISTEN backend>``, then ``RESULT <repr of {workflow_id: message}>`` and
  ``LISTENER <pid of the LISTEN backend> <LISTEN connections made>``.

"Blocked" means: registered with the process's notify hub *and* past the first read of the
database, which is when ``recv``/``sleep`` record their wake-up time (a ``DBOS.sleep`` row).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    SetWorkflowID,
    WorkflowHandleAsync,
)

DB_URL = os.environ["APP_DB_URL"]
EXECUTOR_ID = os.environ["APP_EXECUTOR_ID"]
APP_VERSION = os.environ["APP_VERSION"]
WORKFLOW_ID = os.environ.get("APP_WORKFLOW_ID", "")
COUNT = int(os.environ.get("APP_COUNT", "1"))
SLEEP_SECONDS = float(os.environ.get("APP_SLEEP_SECONDS", "6"))
READY_WITHIN_SECONDS = 15.0


@DBOS.workflow()
async def recv_workflow(topic: str | None) -> Any:
    return await DBOS.recv_async(topic, timeout_seconds=60)


@DBOS.workflow()
async def reply_with_event() -> Any:
    message = await DBOS.recv_async("question", timeout_seconds=60)
    await DBOS.set_event_async("answer", {"reply_to": message})
    return message


@DBOS.workflow()
async def long_sleep() -> str:
    await DBOS.sleep_async(60)
    return "woke up"


@DBOS.step()
async def now() -> float:
    return time.time()


@DBOS.workflow()
async def timed_sleep(seconds: float) -> dict[str, float]:
    started = await now()
    await DBOS.sleep_async(seconds)
    woke = await now()
    return {"started": started, "woke": woke}


def say(line: str) -> None:
    print(line, flush=True)


async def wait_until(what: str, condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` (in-process, every 10 ms) until it holds; fail after a deadline."""
    try:
        async with asyncio.timeout(READY_WITHIN_SECONDS):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise SystemExit(f"not ready within {READY_WITHIN_SECONDS}s: {what}") from None


async def blocked(workflow_ids: list[str], *, waiters: int) -> None:
    """Wait until ``waiters`` hub waiters exist and each workflow recorded a wake-up time."""
    runtime = DBOS._runtime
    assert runtime is not None
    conn = await asyncpg.connect(DB_URL)
    try:

        async def condition() -> bool:
            if runtime.notifier.waiter_count < waiters:
                return False
            timers = await conn.fetchval(
                "SELECT count(DISTINCT workflow_uuid) FROM dbos.operation_outputs "
                "WHERE workflow_uuid = ANY($1::text[]) AND function_name = 'DBOS.sleep'",
                workflow_ids,
            )
            return bool(timers == len(workflow_ids))

        await wait_until(f"{waiters} waiters, timers of {len(workflow_ids)} workflows", condition)
    finally:
        await conn.close()


def listener_pid() -> int:
    """The server PID of this process's LISTEN connection (the notify hub's)."""
    runtime = DBOS._runtime
    assert runtime is not None
    conn = runtime.notifier._conn
    assert conn is not None, "the notify hub has no LISTEN connection"
    return int(conn.get_server_pid())


async def start_blocked(
    workflow: Callable[..., Awaitable[Any]], *args: Any, waiters: int
) -> WorkflowHandleAsync[Any]:
    """Start ``workflow(*args)`` as ``APP_WORKFLOW_ID``; print ``READY <id>`` once it is blocked."""
    with SetWorkflowID(WORKFLOW_ID):
        handle = await DBOS.start_workflow_async(workflow, *args)
    await blocked([WORKFLOW_ID], waiters=waiters)
    say(f"READY {WORKFLOW_ID}")
    return handle


async def run(mode: str) -> None:
    if mode == "recv":
        handle = await start_blocked(recv_workflow, "greeting", waiters=1)
        say(f"RESULT {await handle.get_result()!r}")
    elif mode == "event":
        handle = await start_blocked(reply_with_event, waiters=1)
        say(f"RESULT {await handle.get_result()!r}")
    elif mode == "sleep":
        handle = await start_blocked(long_sleep, waiters=0)
        try:
            result = await handle.get_result()
        except DBOSAwaitedWorkflowCancelledError as error:
            say(f"CANCELLED {type(error).__name__}")
        else:
            say(f"RESULT {result!r}")
    elif mode == "durable-start":
        handle = await start_blocked(timed_sleep, SLEEP_SECONDS, waiters=0)
        result = await handle.get_result()
        say(f"UNEXPECTED {result!r}")  # the test kills this process during the sleep
    elif mode == "durable-recover":
        handle = await DBOS.retrieve_workflow_async(WORKFLOW_ID)
        say(f"RESULT {await handle.get_result()!r}")
    elif mode == "many":
        ids = [f"{WORKFLOW_ID}-{i}" for i in range(COUNT)]
        handles = []
        for workflow_id in ids:
            with SetWorkflowID(workflow_id):
                handles.append(await DBOS.start_workflow_async(recv_workflow, None))
        await blocked(ids, waiters=COUNT)
        say(f"READY {listener_pid()}")
        results = await asyncio.gather(*(handle.get_result() for handle in handles))
        say(f"RESULT {dict(zip(ids, results, strict=True))!r}")
        runtime = DBOS._runtime
        assert runtime is not None
        say(f"LISTENER {listener_pid()} {runtime.notifier.connections_made}")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


async def main(mode: str) -> None:
    DBOS(
        config={
            "name": "cross-process-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": APP_VERSION,
            # Small: the test server's connections are shared with other tests and processes.
            "sys_db_pool_size": 4,
        }
    )
    await DBOS.launch_async()
    try:
        await run(mode)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
