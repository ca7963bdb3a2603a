"""Throwaway system databases for tests: a migrated template, and clones of it.

``CREATE DATABASE ... TEMPLATE`` copies a migrated, empty system database in milliseconds,
which is how the pytest plugin (``dbos_async.testing``) gives each test a clean one.
"""

from __future__ import annotations

import asyncpg

from ._database import _CONNECT_SECONDS, _quote_identifier
from ._urls import normalize_url, with_database

__all__ = ["create_database", "drop_database_named"]


async def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """(Re)create the database ``name`` on the server of ``server_url``, empty or as a copy
    of ``template``; return its URL."""
    server_url = normalize_url(server_url)
    conn = await asyncpg.connect(server_url, timeout=_CONNECT_SECONDS)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")
        copy = f" TEMPLATE {_quote_identifier(template)}" if template else ""
        await conn.execute(f"CREATE DATABASE {_quote_identifier(name)}{copy}")
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database_named(server_url: str, name: str) -> None:
    """Drop the database ``name`` on the server of ``server_url``, even with sessions open."""
    conn = await asyncpg.connect(normalize_url(server_url), timeout=_CONNECT_SECONDS)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")
    finally:
        await conn.close()
