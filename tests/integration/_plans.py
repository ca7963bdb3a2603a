"""Reading Postgres's plans of the engine's statements, in tests of how they are planned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg

from dbos_async._sysdb._database import GENERIC_SETTINGS

__all__ = ["GENERIC_SETTINGS", "PLAN_GENERICALLY", "explain", "nodes"]

PLAN_GENERICALLY = "SET plan_cache_mode = force_generic_plan"
"""What a pool connection's generic plan is made under (Postgres adopts one once a statement's
custom plans cost no less)."""


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``plan`` (a node of EXPLAIN's JSON) and every node under it."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(
    conn: asyncpg.Connection,
    sql: str,
    args: list[Any],
    *,
    generic: bool,
    settings: str = PLAN_GENERICALLY,
) -> dict[str, Any]:
    """The plan of ``sql`` run with ``args``: the one Postgres makes for these values, or
    (``generic``) the one a long-lived prepared statement ends up with, for any values, under
    ``settings`` (by default a pool connection's, which plans generically when Postgres
    chooses to; :data:`GENERIC_SETTINGS` for the statements run on ``Database.generic``)."""
    if not generic:
        return _plan(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    types = [t.name for t in (await conn.prepare(sql)).get_parameters()]
    await conn.execute(settings)
    await conn.execute(f"PREPARE explained ({', '.join(types)}) AS {sql}")
    try:
        literals = ", ".join(_literal(a, t) for a, t in zip(args, types, strict=True))
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE explained({literals})")
        return _plan(explained)
    finally:
        await conn.execute("DEALLOCATE explained; RESET ALL")


def _plan(explained: str) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads(explained)[0]["Plan"]
    return plan


def _literal(value: Any, type_: str) -> str:
    """``value`` as an SQL literal of Postgres type ``type_`` (an array type for a list)."""
    if isinstance(value, list):
        element = type_.removesuffix("[]")
        return f"ARRAY[{', '.join(_literal(v, element) for v in value)}]::{type_}"
    if value is None:
        return f"NULL::{type_}"
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'::bytea"
    return f"'{value}'::{type_}"
