"""Running workflows this process claims: recovery at launch, adoption, dequeue.

A claimed workflow is rebuilt from its row (function, bound instance, inputs, authentication,
deadline, trace context) and replays its recorded steps from memory. One that crashed more
often than its ``max_recovery_attempts`` is dead-lettered instead, and one whose arguments fail
its ``validate_args`` or whose stored user lacks its required roles is recorded as failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._core._context import WorkflowContext
from .._core._errors import DBOSException, DBOSNotAuthorizedError, DBOSSerializationError
from .._core._portable import PORTABLE_JSON, coerce_to_hints
from .._core._roles import Auth, authorize
from .._core._tracing import TRACE_CONTEXT_ATTRIBUTE, trace_context_from
from .._sysdb._messages import cancelled_among
from .._sysdb._queues import requeue_for_recovery
from .._sysdb._workflows import (
    StepOutput,
    claim_for_recovery,
    load_step_outputs,
    load_steps_of,
    mark_recovery_exhausted,
    pending_workflow_ids,
)
from ._arg_validation import validated_arguments
from ._workflow import Invocation, finish, launch

if TYPE_CHECKING:
    import asyncpg
    from opentelemetry.context import Context as TraceContext

    from .._core._runtime import Runtime

__all__ = [
    "RECOVERY_BATCH",
    "recover_pending",
    "recover_workflows",
    "resume_all",
    "resume_claimed",
    "resume_or_log",
]

logger = logging.getLogger("dbos_async")


def _trace_parent_of(row: asyncpg.Record) -> TraceContext | None:
    """The caller's trace context stored with the workflow (asyncpg reads jsonb as text)."""
    stored = row["attributes"]
    if not stored:
        return None
    return trace_context_from(json.loads(stored).get(TRACE_CONTEXT_ATTRIBUTE))


async def recover_pending(runtime: Runtime) -> list[str]:
    """Resume this executor's PENDING workflows; return the IDs now running again.

    Queued workflows go back to their queues (so the queue's limits hold while they recover);
    the others resume here at once.
    """
    requeued = await requeue_for_recovery(
        runtime.db, runtime.executor_id, runtime.application_version, runtime.application_name
    )
    if requeued:
        logger.info("Returned unfinished work to queues %s", ", ".join(requeued))
        for queue_name in requeued:
            runtime.dispatcher.announce(queue_name)
    ids = await pending_workflow_ids(
        runtime.db, runtime.executor_id, runtime.application_version, runtime.application_name
    )
    recovered = await recover_workflows(runtime, ids)
    if ids:
        logger.info("Recovered %d of %d pending workflows", len(recovered), len(ids))
    return recovered


RECOVERY_BATCH = 500
"""Workflows claimed, and their recorded steps read, per statement when many recover at once."""


async def recover_workflows(runtime: Runtime, workflow_ids: Sequence[str]) -> list[str]:
    """Count a recovery attempt on each of ``workflow_ids`` (this executor's PENDING workflows)
    and resume it from its last recorded step; return the IDs now running here.

    A few statements per :data:`RECOVERY_BATCH` workflows rather than two per workflow: at
    launch after a crash, thousands may be waiting.
    """
    running = [wid for wid in workflow_ids if wid in runtime.active]
    waiting = [wid for wid in workflow_ids if wid not in runtime.active]
    for start in range(0, len(waiting), RECOVERY_BATCH):
        batch = waiting[start : start + RECOVERY_BATCH]
        claimed = await claim_for_recovery(runtime.db, batch, runtime.executor_id)
        order = {workflow_id: i for i, workflow_id in enumerate(batch)}
        claimed.sort(key=lambda row: order[row["workflow_uuid"]])
        running.extend(await resume_all(runtime, claimed))
    return running


async def resume_all(runtime: Runtime, rows: Sequence[asyncpg.Record]) -> list[str]:
    """Resume the workflows of ``rows``, just claimed, their recorded steps read in one query
    per :data:`RECOVERY_BATCH`; return the IDs now running here (one that cannot run is
    logged, and dead-lettered or failed as :func:`resume_claimed` says)."""
    running = []
    for start in range(0, len(rows), RECOVERY_BATCH):
        batch = rows[start : start + RECOVERY_BATCH]
        steps = await load_steps_of(runtime.db, [row["workflow_uuid"] for row in batch])
        for row in batch:
            workflow_id = row["workflow_uuid"]
            if await resume_or_log(runtime, row, recorded=steps.get(workflow_id, {})):
                running.append(workflow_id)
    return running


async def resume_or_log(
    runtime: Runtime, row: asyncpg.Record, *, recorded: dict[int, StepOutput] | None
) -> asyncio.Task[Any] | None:
    """:func:`resume_claimed`, a failure logged instead of raised (None then, as for a
    workflow that ended without running): one claimed but not started stays PENDING here,
    and the heartbeat's check for unattended workflows resumes it, or gives it back to its
    queue."""
    try:
        return await resume_claimed(runtime, row, recorded=recorded)
    except DBOSException as error:
        logger.error("Cannot run workflow %s: %s", row["workflow_uuid"], error)
    except Exception:
        logger.exception("Could not start workflow %s", row["workflow_uuid"])
    return None


async def resume_claimed(
    runtime: Runtime, row: asyncpg.Record, *, recorded: dict[int, StepOutput] | None
) -> asyncio.Task[Any] | None:
    """Run a workflow this process just claimed (by recovery or from a queue), from its row.

    Replays its recorded steps: ``recorded``, when they were read already (or are known to be
    none), else read now in one query. A workflow that crashed more often than its
    ``max_recovery_attempts`` is dead-lettered instead, and one whose arguments cannot be read
    or fail its ``validate_args`` (which may also convert them; without one, portable arguments
    are converted by the function's type hints) or whose stored user lacks its required roles
    is recorded as failed; None then.
    """
    workflow_id = row["workflow_uuid"]
    info = runtime.registry.find_workflow(workflow_id, row["name"])
    limit = info.max_recovery_attempts
    if limit is not None and row["recovery_attempts"] > limit + 1:
        logger.error(
            "Workflow %s crashed more than %d times; moving it to MAX_RECOVERY_ATTEMPTS_EXCEEDED",
            workflow_id,
            limit,
        )
        await mark_recovery_exhausted(runtime.db, workflow_id)
        return None
    # The row's format wins: its output and error are recorded as its inputs were.
    fmt = row["serialization"]
    if not runtime.codec.knows(fmt):  # another configuration's: not this process's to fail
        raise DBOSSerializationError(
            f"Workflow {workflow_id} was recorded with the serializer {fmt!r}, "
            "which this process is not configured with"
        )
    try:
        args, kwargs = runtime.codec.loads_inputs(row["inputs"], fmt)
        if fmt == PORTABLE_JSON and info.validate_args is None:
            args, kwargs = coerce_to_hints(
                info.func, args, kwargs, skip_first=info.kind in ("instance", "class")
            )
        args, kwargs = validated_arguments(info, args, kwargs)
    except Exception as invalid:
        logger.error("Workflow %s has invalid arguments: %s", workflow_id, invalid)
        error = runtime.codec.dumps_exception(invalid, fmt)
        await finish(runtime, workflow_id, row["queue_name"], "ERROR", None, error)
        return None
    roles = row["authenticated_roles"]
    auth = Auth(row["authenticated_user"], tuple(roles or ()), row["assumed_role"])
    try:
        authorize(info.roles, auth, info.name)
    except DBOSNotAuthorizedError as denied:
        logger.error("Workflow %s is not authorized to run: %s", workflow_id, denied)
        error = runtime.codec.dumps_exception(denied, fmt)
        await finish(runtime, workflow_id, row["queue_name"], "ERROR", None, error)
        return None
    bound = runtime.registry.bound_target(workflow_id, info, row["class_name"], row["config_name"])
    if recorded is None:
        recorded = await load_step_outputs(runtime.db, workflow_id)
    ctx = WorkflowContext(
        runtime=runtime,
        workflow_id=workflow_id,
        name=info.name,
        recorded=recorded,
        auth=auth,
        deadline_epoch_ms=row["workflow_deadline_epoch_ms"],
        queue_name=row["queue_name"],
        trace_parent=_trace_parent_of(row),
        serialization=fmt,
    )
    if runtime.cancel_heard(workflow_id) and await cancelled_among(runtime.db, [workflow_id]):
        # Cancelled after the claim read its row: it stops before its first step, and ends
        # as any cancelled workflow does.
        ctx.cancelled = True
    runtime.cancel_stale(workflow_id)
    return launch(runtime, ctx, Invocation(info, bound, args, kwargs))
