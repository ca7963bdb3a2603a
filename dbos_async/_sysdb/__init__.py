"""The system database: the only package that holds SQL.

Everything else calls named coroutines (``insert_workflow``, ``insert_step_output``, ...) on a
:class:`Database`, which owns the asyncpg pool.
"""

from __future__ import annotations

from ._database import (
    Database,
    connect_database,
    drop_database,
    migrate_database,
    truncate_database,
)
from ._notify import Notifier, WakeUp

__all__ = [
    "Database",
    "Notifier",
    "WakeUp",
    "connect_database",
    "drop_database",
    "migrate_database",
    "truncate_database",
]
