"""A transaction committed in the application database whose checkpoint never reached the
system database (the process was SIGKILLed in between) is not run again: the next process
returns its recorded output. The app (``apps/transaction_crash_app.py``) holds the checkpoint
back and announces ``COMMITTED``; the test kills it there."""

from __future__ import annotations

import ast
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _drop, _recreate, _session_token, with_database

from ._processes import Children, child_env
from ._records import recorded_steps, workflow_row

pytestmark = pytest.mark.acceptance


@pytest.fixture
async def application_database(admin_url: str) -> AsyncIterator[str]:
    name = f"dbos_async_orders_{_session_token()}"
    url = with_database(admin_url, name)
    await _recreate(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, name text UNIQUE, amount integer)"
        )
    finally:
        await conn.close()
    yield url
    await _drop(admin_url, name)


@pytest.mark.parametrize("flavour", ["async", "sync"])
async def test_a_transaction_killed_before_its_checkpoint_runs_once(
    flavour: str, database_url: str, application_database: str, tmp_path: Path
) -> None:
    """Killed between the application commit and the system checkpoint, the workflow is
    recovered by the next process: the order was inserted once, the transaction's recorded
    output is its result, and the step is then checkpointed."""
    workflow_id = f"tx-crash-{uuid.uuid4()}"
    env = child_env(
        database_url, APP_APPLICATION_DB_URL=application_database, APP_WORKFLOW_ID=workflow_id
    )
    async with Children(tmp_path) as children:
        first = await children.spawn("transaction_crash_app.py", "start", flavour, env=env)
        assert (await first.read_until("COMMITTED ")) == workflow_id
        await first.sigkill()

        app = await asyncpg.connect(application_database)
        try:
            orders = await app.fetch("SELECT id, name, amount FROM orders")
            assert [tuple(row) for row in orders] == [(1, "order-7", 70)]
            assert (
                await app.fetchval(
                    "SELECT count(*) FROM dbos.transaction_outputs WHERE workflow_id = $1",
                    workflow_id,
                )
                == 1
            )
            transaction_step = 2 if flavour == "async" else 1
            assert all(
                fid < transaction_step for fid, _ in await recorded_steps(database_url, workflow_id)
            )

            second = await children.spawn("transaction_crash_app.py", "recover", flavour, env=env)
            result = ast.literal_eval(await second.read_until("RESULT "))
            assert (await second.exit_code()) == 0, second.describe()
            assert result == {"order_id": 1, "amount": 70}
            assert await app.fetchval("SELECT count(*) FROM orders") == 1
        finally:
            await app.close()
    row = await workflow_row(database_url, workflow_id)
    assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 2)
    names = [name for _, name in await recorded_steps(database_url, workflow_id)]
    assert names[-1] == ("record_order" if flavour == "async" else "record_order_sync")
