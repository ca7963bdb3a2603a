"""Waiting, in a test, until a statement of the test's database waits for a row lock."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

__all__ = ["until_a_statement_waits_for_a_lock"]


async def until_a_statement_waits_for_a_lock(
    watcher: asyncpg.Connection,
    *,
    unless_done: asyncio.Future[Any] | None = None,
    seconds: float = 10.0,
) -> None:
    """Return once another session of ``watcher``'s database waits for a lock; fail the test
    after ``seconds``, or as soon as ``unless_done`` (the statement expected to wait) ends.

    (Postgres tells no one that a statement started waiting: only polling shows it.)
    """
    for _ in range(int(seconds / 0.01)):
        if await watcher.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid())"
        ):
            return
        if unless_done is not None and unless_done.done():
            pytest.fail("the statement ended without waiting for the lock")
        await asyncio.sleep(0.01)
    pytest.fail(f"no statement waited for a lock within {seconds} s")
