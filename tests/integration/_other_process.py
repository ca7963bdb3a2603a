"""A second engine in the test's process, standing for another process of the application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dbos_async._core._config import resolve_config
from dbos_async._core._registry import default_registry
from dbos_async._core._runtime import Runtime
from dbos_async._engine import Engine
from tests.conftest import make_config

__all__ = ["another_process", "until_asked_to_be_told"]


@asynccontextmanager
async def another_process(database_url: str, executor_id: str) -> AsyncIterator[Runtime]:
    """The runtime of an engine of its own (executor, pool, listener) on ``database_url``. Its
    safety sweep is off: only a notification can reach it within a test's bounded waits."""
    engine = Engine(
        resolve_config(make_config(database_url, executor_id=executor_id)), default_registry
    )
    engine.safety_poll_seconds = 3600
    await engine.start(database_url)
    try:
        yield engine.runtime
    finally:
        await engine.stop()


async def until_asked_to_be_told(runtime: Runtime, workflow_id: str) -> None:
    """Return once a waiter asked to be told when ``workflow_id`` ends (its ``awaited`` flag:
    the waiter then waits for the notification). Bounded by the caller's timeout."""
    while not await runtime.db.fetchval(  # noqa: ASYNC110 (no event for the flag)
        "SELECT awaited FROM workflow_status WHERE workflow_uuid = $1", workflow_id
    ):
        await asyncio.sleep(0.01)
