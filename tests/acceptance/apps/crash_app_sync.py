"""A sync app for the crash-recovery acceptance test: a sync workflow of sync steps.

Run as ``python crash_app_sync.py start`` to start the workflow (it blocks in step 3 when
``BLOCK_STEP3=1``, after printing ``READY <workflow_id>``), or ``python crash_app_sync.py
recover`` to launch (which recovers the workflow), wait for its result and print
``RESULT <repr>``.

Environment: ``APP_DB_URL`` (system database), ``APP_WORKFLOW_ID``, ``APP_SIDE_EFFECT_LOG``
(a file every step appends ``<step> <pid>`` to, fsynced, as its side effect), ``BLOCK_STEP3``.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from dbos_async import DBOS, SetWorkflowID

DB_URL = os.environ["APP_DB_URL"]
WORKFLOW_ID = os.environ["APP_WORKFLOW_ID"]
SIDE_EFFECT_LOG = os.environ["APP_SIDE_EFFECT_LOG"]
BLOCK_STEP3 = os.environ.get("BLOCK_STEP3") == "1"


def record(step: str) -> None:
    """The side effect of a step: one durable line in the side-effect log."""
    fd = os.open(SIDE_EFFECT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{step} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@DBOS.step()
def step_one(x: int) -> int:
    record("step1")
    return x + 1


@DBOS.step()
def step_two(x: int) -> int:
    record("step2")
    return x * 10


@DBOS.step()
def step_three(x: int) -> int:
    print(f"READY {DBOS.workflow_id}", flush=True)
    if BLOCK_STEP3:
        threading.Event().wait()  # never set: the process is killed here
    record("step3")
    return x + 3


@DBOS.step()
def step_four(x: int) -> int:
    record("step4")
    return x * 2


@DBOS.workflow()
def crash_workflow_sync(x: int) -> dict[str, int]:
    a = step_one(x)
    b = step_two(a)
    c = step_three(b)
    d = step_four(c)
    return {"a": a, "b": b, "c": c, "d": d}


def main(mode: str) -> None:
    config: dict[str, Any] = {
        "name": "crash-app",
        "system_database_url": DB_URL,
        "application_version": "crash-test-v1",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        if mode == "start":
            with SetWorkflowID(WORKFLOW_ID):
                handle = DBOS.start_workflow(crash_workflow_sync, 1)
            result = handle.get_result()
            print(f"UNEXPECTED {result!r}", flush=True)
        else:
            handle = DBOS.retrieve_workflow(WORKFLOW_ID)
            result = handle.get_result()
            print(f"RESULT {result!r}", flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1])
