"""A write that names its workflow by key reaches it by key, whatever the statistics say.

Postgres plans with the statistics of the last ANALYZE, which autovacuum takes a minute or more
after a burst (and a server without autovacuum never). Each test here takes statistics, then
starts a burst of PENDING workflows, and reads the plans of the statements that check and
record a workflow's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dbos_async._sysdb import Database, connect_database
from dbos_async._sysdb._guards import owned_by
from dbos_async._sysdb._queues import _CLAIM_LOCAL, _CLAIM_SHARED, _OUTCOMES_THEN_CLAIM
from dbos_async._sysdb._workflows import (
    _CLAIM_FOR_RECOVERY,
    _COMPLETE_WORKFLOW,
    _COMPLETE_WORKFLOWS,
    _INSERT_STEP,
    _RECOVERY_EXHAUSTED,
)
from tests.integration._plans import GENERIC_SETTINGS, PLAN_GENERICALLY, explain, nodes

BURST = 20_000
ONE = "burst-19999"
IDS = ["burst-1", "burst-3"]
OUTCOMES = [IDS, ["SUCCESS"] * 2, [b"1"] * 2, [None] * 2, 0, ["local"] * 2]
CLAIM = ["q", "local", "v1", 0, 10, None, None, True]

# Each statement, its arguments, whether it runs on ``Database.generic``'s connections (the
# batched writes) or the pool's, and the common table expression that finds the workflows it
# names (None: the whole statement).
STATEMENTS: dict[str, tuple[str, list[Any], bool, str | None]] = {
    "guard": (f"SELECT {owned_by('$1', '$2')}", [ONE, "local"], True, None),
    "a batch's guard": (
        "SELECT count(*) FROM unnest($1::text[], $2::text[]) AS u(id, owner) "
        f"WHERE {owned_by('u.id', 'u.owner')}",
        [IDS, ["local"] * 2],
        True,
        None,
    ),
    "step": (_INSERT_STEP, [ONE, 1, "step", None, None, None, None, 0, 0, "local"], True, None),
    "one outcome": (_COMPLETE_WORKFLOW, [ONE, "SUCCESS", b"1", None, 0, "local"], True, None),
    "a batch of outcomes": (_COMPLETE_WORKFLOWS, OUTCOMES, True, None),
    "outcomes, then a claim": (*_OUTCOMES_THEN_CLAIM.bind([*OUTCOMES, *CLAIM]), True, "done"),
    "recovery attempts": (_CLAIM_FOR_RECOVERY, [[ONE, *IDS], "local", 0], True, None),
    "recovery attempts exhausted": (_RECOVERY_EXHAUSTED, [ONE, 0], False, None),
}


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await connect_database(database_url, pool_size=2)
    yield database
    await database.close()


def _cte(plan: dict[str, Any], name: str) -> dict[str, Any]:
    """The plan of ``plan``'s common table expression ``name``."""
    return next(node for node in nodes(plan) if node.get("Subplan Name") == f"CTE {name}")


def _reads_of_workflow_status(plan: dict[str, Any]) -> set[str]:
    """How ``plan`` reads ``workflow_status``: the indexes it scans, or "seq scan"."""
    return {
        node.get("Index Name", "seq scan")
        for node in nodes(plan)
        if node.get("Relation Name") == "workflow_status" and "Scan" in node["Node Type"]
    }


@pytest.mark.parametrize(
    ("finished_before_analyze", "burst"),
    [(0, BURST), (1000, BURST), (20, 0)],
    ids=[
        "statistics-of-an-empty-table",
        "statistics-of-finished-workflows-only",
        "planned-while-the-table-was-small",
    ],
)
async def test_keyed_statements_reach_their_rows_by_key_after_a_burst(
    db: Database, finished_before_analyze: int, burst: int
) -> None:
    """Statistics of an empty table, or of finished workflows only, estimate that no row is
    PENDING. Checks saying ``status = 'PENDING'`` were then planned through an index of the
    burst (the partial index of PENDING rows, or the listing index by status): one outcome
    took 16 ms and a batch of 200 took 29 ms at 100,000 PENDING, against 0.2 and 3. And a
    generic plan made while the table was small, kept for its connection's life, would scan
    the table however large it grew."""
    await db.execute(
        f"""
        INSERT INTO workflow_status (workflow_uuid, status, name, executor_id,
            application_version, created_at, updated_at)
        SELECT 'done-' || i, 'SUCCESS', 'wf', 'local', 'v1', 0, 0
        FROM generate_series(1, {finished_before_analyze}) AS i
        """
    )
    await db.execute("ANALYZE workflow_status")
    await db.execute(
        f"""
        INSERT INTO workflow_status (workflow_uuid, status, name, executor_id,
            application_version, queue_name, created_at, updated_at)
        SELECT 'burst-' || i, 'PENDING', 'wf', 'local', 'v1',
            CASE WHEN i % 2 = 0 THEN 'q' END, 0, 0
        FROM generate_series(1, {burst}) AS i
        """
    )
    async with db.pool.acquire() as conn:
        for name, (sql, args, on_generic, part) in STATEMENTS.items():
            if not burst and not on_generic:
                continue  # (recovery, planned at launch for the table as it is then)
            # (Database.generic's connections plan every statement generically.)
            for generic in (True,) if on_generic else (False, True):
                settings = GENERIC_SETTINGS if on_generic else PLAN_GENERICALLY
                plan = await explain(conn, sql, args, generic=generic, settings=settings)
                reads = _reads_of_workflow_status(_cte(plan, part) if part else plan)
                assert reads == {"workflow_status_pkey"}, (name, generic, reads)


SHARED = [20, None, None, None, None, None]  # a queue-wide concurrency limit of 20


@pytest.mark.parametrize("analyze_after_burst", [False, True], ids=["stale", "fresh"])
async def test_a_claim_reads_its_queue_in_index_order_and_stops_at_its_limit(
    db: Database, analyze_after_burst: bool
) -> None:
    """A claim takes the first workflows of its queue in the order of
    ``workflow_status_in_flight``. On statistics of finished workflows only it was planned
    through the listing index by status, and on fresh ones as a bitmap scan: either way it read
    and sorted every entry of the queue (dead ones of claimed workflows included) at every
    claim."""
    await db.execute(
        """
        INSERT INTO workflow_status (workflow_uuid, status, name, executor_id,
            application_version, created_at, updated_at)
        SELECT 'done-' || i, 'SUCCESS', 'wf', 'local', 'v1', 0, 0
        FROM generate_series(1, 1000) AS i;
        ANALYZE workflow_status;
        INSERT INTO workflow_status (workflow_uuid, status, name, application_version,
            queue_name, created_at, updated_at)
        SELECT 'queued-' || i, 'ENQUEUED', 'wf', 'v1', 'q', i, i
        FROM generate_series(1, 20000) AS i
        """
    )
    if analyze_after_burst:
        await db.execute("ANALYZE workflow_status")
    claims: dict[str, tuple[str, list[Any]]] = {
        "a claim": (_CLAIM_LOCAL, CLAIM),
        "a claim under shared limits": (_CLAIM_SHARED, [*CLAIM[:-1], *SHARED, CLAIM[-1]]),
        "outcomes, then a claim": _OUTCOMES_THEN_CLAIM.bind([*OUTCOMES, *CLAIM]),
    }
    async with db.pool.acquire() as conn:
        for name, (sql, args) in claims.items():
            plan = await explain(conn, sql, args, generic=True, settings=GENERIC_SETTINGS)
            picked = list(nodes(_cte(plan, "picked")))
            scans = [
                (node["Node Type"], node.get("Index Name"))
                for node in picked
                if node.get("Relation Name") == "workflow_status"
            ]
            assert scans == [("Index Scan", "workflow_status_in_flight")], (name, scans)
            assert not any(node["Node Type"] == "Sort" for node in picked), name
