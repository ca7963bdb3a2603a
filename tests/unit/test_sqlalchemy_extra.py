"""Without the ``sqlalchemy`` extra the package still imports, and each datasource entry point
names the extra to install (checked in a subprocess where SQLAlchemy cannot be imported)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio, sys
sys.modules["sqlalchemy"] = None  # as if the extra were not installed
from dbos_async import DBOS, AsyncSQLAlchemyDatasource, DBOSException, SQLAlchemyDatasource

def message(call):
    try:
        call()
    except DBOSException as error:
        return str(error)
    return "no error"

print(message(lambda: asyncio.run(AsyncSQLAlchemyDatasource.create("postgresql://x/y"))))
print(message(lambda: SQLAlchemyDatasource.create("postgresql://x/y")))
print("sqlalchemy" in sys.modules and sys.modules["sqlalchemy"] is not None)
"""


def test_datasources_without_the_extra_name_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out[0] == out[1].replace("SQLAlchemyDatasource", "AsyncSQLAlchemyDatasource", 1)
    assert "pip install 'dbos_async[sqlalchemy]'" in out[0]
    assert "pip install 'dbos_async[sqlalchemy]'" in out[1]
    assert out[2] == "False"
