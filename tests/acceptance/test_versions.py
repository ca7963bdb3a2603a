"""Two processes running two application versions on one system database: work pinned to a
version runs only in the process running it, work pinned to none only in the process running
the latest version, and ``set_latest_application_version`` moves that role at once.

The workers run ``apps/version_app.py``; a ``DBOSClient`` in the test enqueues and promotes.
Each worker prints ``LATEST yes``/``LATEST no`` when it learns that its version became or stopped
being the latest, which is how the test knows a change has reached it before enqueueing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOSClient, EnqueueOptions, WorkflowHandleAsync

from ._processes import Child, Children, child_env

pytestmark = pytest.mark.acceptance

APP = "version_app.py"
QUEUE = "acceptance_versions"
PER_KIND = 4
"""How many workflows of each kind (pinned to v1, to v2, unpinned) a round enqueues."""
WAIT_SECONDS = 20.0


def _env(database_url: str, executor_id: str, version: str) -> dict[str, str]:
    return child_env(database_url, APP_EXECUTOR_ID=executor_id, APP_VERSION=version)


async def _stop(child: Child) -> None:
    os.kill(child.proc.pid, signal.SIGTERM)
    assert (await child.exit_code()) == 0, child.describe()


async def _round(client: DBOSClient, tag: str) -> dict[str, set[str]]:
    """Enqueue workflows pinned to v1, to v2 and to no version; the versions that ran each
    kind."""
    handles: dict[str, list[WorkflowHandleAsync[Any]]] = {}
    for kind in ("v1", "v2", "unpinned"):
        handles[kind] = []
        for i in range(PER_KIND):
            options = EnqueueOptions(
                workflow_name="which_version", queue_name=QUEUE, workflow_id=f"{tag}-{kind}-{i}"
            )
            if kind != "unpinned":
                options["app_version"] = kind
            handles[kind].append(await client.enqueue_async(options, i))
    ran: dict[str, set[str]] = {}
    for kind, kind_handles in handles.items():
        results = [
            await asyncio.wait_for(handle.get_result(), WAIT_SECONDS) for handle in kind_handles
        ]
        ran[kind] = set(results)
    return ran


async def _executors(database_url: str, prefix: str) -> dict[str, set[str]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT workflow_uuid, executor_id FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE $1",
            f"{prefix}-%",
        )
    finally:
        await conn.close()
    by_kind: dict[str, set[str]] = {}
    for row in rows:
        kind = row["workflow_uuid"].split("-")[1]
        by_kind.setdefault(kind, set()).add(row["executor_id"])
    return by_kind


async def test_versions_decide_which_process_runs_what(database_url: str, tmp_path: Path) -> None:
    async with Children(tmp_path) as children:
        v1 = await children.spawn(APP, env=_env(database_url, "exec-v1", "v1"))
        await v1.read_until("READY ")
        v2 = await children.spawn(APP, env=_env(database_url, "exec-v2", "v2"))
        await v2.read_until("READY ")
        # v2 launched last, so it is the latest: v1 hears of it.
        assert await v1.read_until("LATEST ") == "no"

        async with DBOSClient(database_url, application_name="version-app") as client:
            latest = await client.get_latest_application_version_async()
            assert latest["version_name"] == "v2"
            assert await _round(client, "first") == {
                "v1": {"v1"},
                "v2": {"v2"},
                "unpinned": {"v2"},
            }

            await client.set_latest_application_version_async("v1")
            assert await v1.read_until("LATEST ") == "yes"
            assert await v2.read_until("LATEST ") == "no"
            assert await _round(client, "second") == {
                "v1": {"v1"},
                "v2": {"v2"},
                "unpinned": {"v1"},
            }
            versions = [v["version_name"] for v in await client.list_application_versions_async()]
            assert versions == ["v1", "v2"]

        await _stop(v1)
        await _stop(v2)

    assert await _executors(database_url, "first") == {
        "v1": {"exec-v1"},
        "v2": {"exec-v2"},
        "unpinned": {"exec-v2"},
    }
    assert await _executors(database_url, "second") == {
        "v1": {"exec-v1"},
        "v2": {"exec-v2"},
        "unpinned": {"exec-v1"},
    }
