"""The worker for the client acceptance tests: it runs the workflows a ``DBOSClient`` in the
test process enqueues and messages.

Run as ``python client_worker_app.py``: it launches DBOS (application ``client-app``, executor
``APP_EXECUTOR_ID``) on ``APP_DB_URL``, prints ``READY <pid>``, and runs queued work until
SIGTERM (exit code 0). Its queue ``client_work`` is declared in code, so the client learns of it
from what this process declared at launch.

* ``cw_double(x)`` returns ``2 * x``.
* ``cw_conversation(greeting)`` sets event ``greeted``, writes 0, 1, 2 to stream ``numbers`` and
  closes it, then waits for a message on ``reply`` and returns ``"<greeting> -> <reply>"``.
* ``cw_wait()`` prints ``WAITING <workflow id>`` and waits for a message on ``go``.
"""

from __future__ import annotations

import asyncio
import os

from dbos_async import DBOS, Queue
from tests.acceptance.apps._lifetime import serve_until_sigterm

DB_URL = os.environ["APP_DB_URL"]
LIFETIME_SECONDS = 90.0

work_queue = Queue("client_work", worker_concurrency=10)


@DBOS.workflow()
async def cw_double(x: int) -> int:
    return 2 * x


@DBOS.workflow()
async def cw_conversation(greeting: str) -> str:
    await DBOS.set_event_async("greeted", greeting)
    for i in range(3):
        await DBOS.write_stream_async("numbers", i)
    await DBOS.close_stream_async("numbers")
    reply = await DBOS.recv_async("reply", timeout_seconds=60)
    return f"{greeting} -> {reply}"


@DBOS.workflow()
async def cw_wait() -> str:
    print(f"WAITING {DBOS.workflow_id}", flush=True)
    message = await DBOS.recv_async("go", timeout_seconds=60)
    return f"went {message}"


async def main() -> None:
    DBOS(
        config={
            "name": "client-app",
            "system_database_url": DB_URL,
            "executor_id": os.environ["APP_EXECUTOR_ID"],
            "application_version": "client-v1",
            "sys_db_pool_size": 4,
        }
    )
    await DBOS.launch_async()
    try:
        print(f"READY {os.getpid()}", flush=True)
        await serve_until_sigterm(LIFETIME_SECONDS)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
