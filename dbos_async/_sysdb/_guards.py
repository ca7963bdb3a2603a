"""Conditions on a workflow's row that a write checks, written so that Postgres finds the row
by its primary key and only then tests them.

Postgres plans with the statistics of the last ``ANALYZE``. After a burst (100,000 workflows
started since the statistics saw 1,000 finished ones), a condition such as ``status =
'PENDING'`` is estimated to match almost nothing, and a write that names its rows by key was
planned through an index of the burst (``workflow_status_pending``, the partial index of
PENDING rows, or ``workflow_status_by_status``): it read every PENDING row to find the few it
wanted. The conditions here give the planner nothing to reach rows through, so the key does.
"""

from __future__ import annotations

__all__ = ["has_status", "owned_by"]


def has_status(status: str, row: str | None = None) -> str:
    """SQL: the row (of alias ``row``, if given) has ``status``, a constant.

    Tested on the row the statement found by its key, never used to find rows: the
    expression matches no index and has no statistics. With the statistics of the burst
    above, a batch of 200 outcomes saying ``status = 'PENDING'`` hashed all 100,000 PENDING
    rows (29 ms, against 3 ms written so), and one outcome took 16 ms (against 0.2).
    """
    column = f"{row}.status" if row is not None else "status"
    return f"{column} || '' = '{status}'"


def owned_by(workflow: str, owner: str) -> str:
    """SQL: the workflow ``workflow`` (a parameter or column) is PENDING and run by ``owner``.

    Every checkpoint write carries this guard. A cancelled workflow stops at its next step
    even if the cancellation's notification never reached its process, and an execution whose
    workflow another executor adopted (its heartbeat had lapsed) can no longer record anything.

    It is a scalar subquery on purpose, looked up by the primary key for each row it guards:
    Postgres cannot turn it into a join. As an ``EXISTS`` (a semi-join) on a table without
    fresh statistics, Postgres reached the rows through the ``workflow_status_pending`` index
    instead: one guard read through all of the executor's PENDING workflows (68 ms each at
    90,000 waiting), a batch hashed all of them (4 ms per batch of 200 at 20,000).
    """
    return (
        "COALESCE((SELECT owned.status = 'PENDING' AND owned.executor_id IS NOT DISTINCT FROM "
        f"{owner} FROM workflow_status AS owned WHERE owned.workflow_uuid = {workflow}), false)"
    )
