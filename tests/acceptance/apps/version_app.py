"""A worker process for the application-version acceptance test: two run at once, each on its
own version, on one system database.

Run as ``python version_app.py``. It launches DBOS (executor ``APP_EXECUTOR_ID``, version
``APP_VERSION``) on ``APP_DB_URL``, prints ``READY <pid>``, then runs queued ``which_version``
workflows until SIGTERM, when it shuts down and exits with code 0. Whenever this process learns
that its version became, or stopped being, the latest (the engine logs it), it prints
``LATEST yes`` or ``LATEST no``, so that the test knows when a change has reached it.
"""

from __future__ import annotations

import asyncio
import logging
import os

from dbos_async import DBOS, Queue
from tests.acceptance.apps._lifetime import serve_until_sigterm

DB_URL = os.environ["APP_DB_URL"]
EXECUTOR_ID = os.environ["APP_EXECUTOR_ID"]
APP_VERSION = os.environ["APP_VERSION"]
LIFETIME_SECONDS = 60.0
"""A worker never outlives this, even if the test that started it could not stop it."""

Queue("acceptance_versions")


@DBOS.workflow()
async def which_version(task: int) -> str:
    """The version of the process that ran it."""
    return DBOS.application_version


class _LatestReporter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(f"Application version {APP_VERSION} is now the latest"):
            print("LATEST yes", flush=True)
        elif message.startswith(f"Application version {APP_VERSION} is no longer the latest"):
            print("LATEST no", flush=True)


async def main() -> None:
    package_logger = logging.getLogger("dbos_async")
    package_logger.addHandler(_LatestReporter())
    package_logger.addHandler(logging.StreamHandler())  # to stderr, which failures quote
    DBOS(
        config={
            "name": "version-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": APP_VERSION,
            # Small: the test server's connections are shared with other tests and processes.
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
