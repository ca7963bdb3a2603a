"""Operating a worker fleet from outside: the CLI and the admin API see, and steer, the
workflows a separate worker process runs, through the system database alone."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from dbos_async import DBOSClient, EnqueueOptions
from dbos_async.admin import admin_app
from tests.acceptance._processes import PROJECT_ROOT, Children, child_env

pytestmark = pytest.mark.acceptance


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    """Run ``python -m dbos_async -s URL ARGS`` (the CLI as installed); (status, out, err)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dbos_async",
        "-s",
        database_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def cli_json(database_url: str, *args: str) -> Any:
    status, out, err = await cli(database_url, *args, "--json")
    assert status == 0, err
    return json.loads(out)


async def test_the_cli_and_the_admin_api_steer_a_worker_process(
    database_url: str, tmp_path: Path
) -> None:
    async with Children(tmp_path) as children:
        worker = await children.spawn(
            "client_worker_app.py", env=child_env(database_url, APP_EXECUTOR_ID="ops-1")
        )
        await worker.read_until("READY ")
        async with DBOSClient(database_url, application_name="client-app") as client:
            options = EnqueueOptions(queue_name="client_work", workflow_name="cw_double")
            done = await client.enqueue_async(options, 21)
            assert await asyncio.wait_for(done.get_result(), 20) == 42
            waiting = await client.enqueue_async(
                EnqueueOptions(queue_name="client_work", workflow_name="cw_wait")
            )
            assert (await worker.read_until("WAITING ")) == waiting.workflow_id

            # The CLI lists both, by status, and cancels the waiting one.
            listed = await cli_json(database_url, "workflow", "list")
            statuses = {w["workflow_id"]: w["status"] for w in listed}
            assert statuses[done.workflow_id] == "SUCCESS"
            assert statuses[waiting.workflow_id] == "PENDING"
            got = await cli_json(database_url, "workflow", "get", done.workflow_id)
            assert (got["name"], got["executor_id"]) == ("cw_double", "ops-1")
            status, _, _ = await cli(database_url, "workflow", "cancel", waiting.workflow_id)
            assert status == 0
            status, _, err = await cli(database_url, "workflow", "get", "no-such-workflow")
            assert status == 1 and len(err.strip().splitlines()) == 1

            # The admin API, mounted in an app of this process, sees what the worker recorded.
            app = Starlette(routes=[Mount("/dbos", admin_app(client=client))])
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ops/dbos") as http:
                row = (await http.get(f"/workflows/{waiting.workflow_id}")).json()
                assert row["Status"] == "CANCELLED"
                resumed = await http.post(f"/workflows/{waiting.workflow_id}/resume")
                assert resumed.status_code in (200, 204)
            await client.send_async(waiting.workflow_id, "now", "go")
            assert await asyncio.wait_for(waiting.get_result(), 20) == "went now"
