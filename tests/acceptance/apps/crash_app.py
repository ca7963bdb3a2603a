"""An async app for the crash-recovery acceptance test: a workflow of async steps.

Run as ``python crash_app.py start`` to start the workflow (it blocks in step 3 when
``BLOCK_STEP3=1``, after printing ``READY <workflow_id>``), or ``python crash_app.py recover`` to
launch (which recovers the workflow), wait for its result and print ``RESULT <repr>``.

Environment: ``APP_DB_URL`` (system database), ``APP_WORKFLOW_ID``, ``APP_SIDE_EFFECT_LOG``
(a file every step appends ``<step> <pid>`` to, fsynced, as its side effect), ``BLOCK_STEP3``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from dbos_async import DBOS, SetWorkflowID

DB_URL = os.environ["APP_DB_URL"]
WORKFLOW_ID = os.environ["APP_WORKFLOW_ID"]
SIDE_EFFECT_LOG = os.environ["APP_SIDE_EFFECT_LOG"]
BLOCK_STEP3 = os.environ.get("BLOCK_STEP3") == "1"

# Step 2b finishes first and releases step 2a: completion order is the reverse of call order.
_two_b_done = asyncio.Event()


def _append_side_effect(step: str) -> None:
    fd = os.open(SIDE_EFFECT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{step} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def record(step: str) -> None:
    """The side effect of a step: one durable line in the side-effect log."""
    await asyncio.to_thread(_append_side_effect, step)


@DBOS.step()
async def step_one(x: int) -> int:
    await record("step1")
    return x + 1


@DBOS.step()
async def step_two_a(x: int) -> int:
    await _two_b_done.wait()
    await record("step2a")
    return x * 10


@DBOS.step()
async def step_two_b(x: int) -> int:
    await record("step2b")
    _two_b_done.set()
    return x * 100


@DBOS.step()
async def step_three(x: int) -> int:
    print(f"READY {DBOS.workflow_id}", flush=True)
    if BLOCK_STEP3:
        await asyncio.Event().wait()  # never set: the process is killed here
    await record("step3")
    return x + 3


@DBOS.step()
async def step_four(x: int) -> int:
    await record("step4")
    return x * 2


@DBOS.workflow()
async def crash_workflow(x: int) -> dict[str, int]:
    a = await step_one(x)
    b, c = await asyncio.gather(step_two_a(a), step_two_b(a))
    d = await step_three(b + c)
    e = await step_four(d)
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


async def main(mode: str) -> None:
    config: dict[str, Any] = {
        "name": "crash-app",
        "system_database_url": DB_URL,
        "application_version": "crash-test-v1",
    }
    DBOS(config=config)
    await DBOS.launch_async()
    try:
        if mode == "start":
            with SetWorkflowID(WORKFLOW_ID):
                handle = await DBOS.start_workflow_async(crash_workflow, 1)
            result = await handle.get_result()
            print(f"UNEXPECTED {result!r}", flush=True)
        else:
            handle = await DBOS.retrieve_workflow_async(WORKFLOW_ID)
            result = await handle.get_result()
            print(f"RESULT {result!r}", flush=True)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
