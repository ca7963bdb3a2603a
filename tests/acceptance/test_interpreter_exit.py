"""A process that launched DBOS from sync code and never destroyed it still exits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from tests.acceptance._processes import PROJECT_ROOT, child_env
from tests.acceptance._records import workflow_row

pytestmark = pytest.mark.acceptance

SCRIPT = textwrap.dedent(
    """
    import os, threading
    from dbos_async import DBOS, SetWorkflowID

    waiting = threading.Event()

    @DBOS.step()
    def announce() -> None:
        waiting.set()

    @DBOS.workflow()
    def waits_for_a_message() -> str:
        announce()
        return str(DBOS.recv("go", timeout_seconds=600))

    DBOS(config={"name": "exit-test", "system_database_url": os.environ["APP_DB_URL"],
                 "sys_db_pool_size": 2})
    DBOS.launch()
    with SetWorkflowID("left-waiting"):
        DBOS.start_workflow(waits_for_a_message)
    assert waiting.wait(20)
    print("LEAVING", flush=True)
    # No DBOS.destroy(): the interpreter must still exit, leaving the workflow to recovery.
    """
)


def test_exit_without_destroy_leaves_a_waiting_sync_workflow_pending(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT_ROOT,
        env=child_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,  # a hang fails here, long before the workflow's 600 s receive timeout
    )
    assert done.returncode == 0, done.stderr
    assert "LEAVING" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    row = asyncio.run(workflow_row(database_url, "left-waiting"))
    assert row["status"] == "PENDING"
