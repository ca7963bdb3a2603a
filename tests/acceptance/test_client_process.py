"""A ``DBOSClient`` alone in the test process drives a worker process: it never launches DBOS,
and its waits are woken by notifications, not polls.

Every result or event below is awaited with a bound far shorter than the client's safety
re-check (30 s), so only the LISTEN/NOTIFY path can deliver it in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from dbos_async import DBOSClient, DBOSNonExistentWorkflowError, EnqueueOptions
from dbos_async._core._runtime import current_runtime_or_none
from dbos_async.error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowFunctionNotFoundError

from ._processes import Child, Children, child_env

pytestmark = pytest.mark.acceptance

APP = "client_worker_app.py"
WOKEN_WITHIN_SECONDS = 10.0
"""A third of the client's 30 s safety re-check: only a notification arrives in time."""


def _options(name: str, **more: object) -> EnqueueOptions:
    options: EnqueueOptions = {"workflow_name": name, "queue_name": "client_work"}
    options.update(more)  # type: ignore[typeddict-item]
    return options


async def _worker(children: Children, database_url: str) -> Child:
    worker = await children.spawn(APP, env=child_env(database_url, APP_EXECUTOR_ID="cw-1"))
    await worker.read_until("READY ")
    return worker


async def _stop(worker: Child) -> None:
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert (await worker.exit_code()) == 0, worker.describe()


async def test_a_client_alone_drives_a_worker_process(database_url: str, tmp_path: Path) -> None:
    async with Children(tmp_path) as children:
        worker = await _worker(children, database_url)
        async with DBOSClient(database_url, application_name="client-app") as client:
            assert current_runtime_or_none() is None  # nothing launched here
            async with asyncio.timeout(WOKEN_WITHIN_SECONDS):
                doubled = await client.enqueue_async(_options("cw_double"), 21)
                assert await doubled.get_result() == 42

                convo = await client.enqueue_async(_options("cw_conversation"), "hello")
                assert await client.get_event_async(convo.workflow_id, "greeted", 5) == "hello"
                numbers = [v async for v in client.read_stream_async(convo.workflow_id, "numbers")]
                assert numbers == [0, 1, 2]
                await client.send_async(convo.workflow_id, "hi", "reply")
                assert await convo.get_result() == "hello -> hi"

                waiting = await client.enqueue_async(_options("cw_wait", workflow_id="cw-wait"))
                assert await worker.read_until("WAITING ") == "cw-wait"
                await client.cancel_workflow_async("cw-wait")
                with pytest.raises(DBOSAwaitedWorkflowCancelledError):
                    await waiting.get_result()
                resumed = await client.resume_workflow_async("cw-wait")
                assert await worker.read_until("WAITING ") == "cw-wait"
                await client.send_async("cw-wait", "now", "go")
                assert await resumed.get_result() == "went now"

                fork = await client.fork_workflow_async(doubled.workflow_id, 1)
                assert await fork.get_result() == 42

            listed = await client.list_workflows_async(name="cw_double")
            assert {s.workflow_id for s in listed} == {doubled.workflow_id, fork.workflow_id}
            steps = await client.list_workflow_steps_async(convo.workflow_id)
            assert [s["function_name"] for s in steps][:1] == ["DBOS.setEvent"]
            with pytest.raises(DBOSWorkflowFunctionNotFoundError):
                await client.enqueue_async(_options("cw_not_declared"))
            with pytest.raises(DBOSNonExistentWorkflowError):
                await client.retrieve_workflow_async("cw-nobody")
        await _stop(worker)


def test_the_sync_client_drives_a_worker_process(database_url: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with Children(tmp_path) as children:
            worker = await _worker(children, database_url)

            def drive() -> None:
                with DBOSClient(database_url, application_name="client-app") as client:
                    handle = client.enqueue(_options("cw_double"), 5)
                    assert handle.get_result() == 10
                    convo = client.enqueue(_options("cw_conversation"), "sync")
                    assert client.get_event(convo.workflow_id, "greeted", 5) == "sync"
                    assert list(client.read_stream(convo.workflow_id, "numbers")) == [0, 1, 2]
                    client.send(convo.workflow_id, "ok", "reply")
                    assert convo.get_result() == "sync -> ok"

            await asyncio.wait_for(asyncio.to_thread(drive), WOKEN_WITHIN_SECONDS)
            await _stop(worker)

    asyncio.run(run())
