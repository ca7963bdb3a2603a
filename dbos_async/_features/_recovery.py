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
from typing import TYPE_CHECKING, Any

from .._core._context import WorkflowContext
from .._core._errors import DBOSException, DBOSNotAuthorizedError, DBOSSerializationError
from .._core._portable import PORTABLE_JSON, coerce_to_hints
from .._core._roles import Auth, authorize
from .._core._tracing import TRACE_CONTEXT_ATTRIBUTE, trace_context_from
from .._sysdb._queues import requeue_for_recovery
from .._sysdb._workflows import (
    StepOutput,
    claim_for_recovery,
    load_step_outputs,
    mark_recovery_exhausted,
    pending_workflow_ids,
)
from ._arg_validation import validated_arguments
from ._workflow import Invocation, finish, launch

if TYPE_CHECKING:
    import asyncpg
    from opentelemetry.context import Context as TraceContext

    from .._core._runtime import Runtime

__all__ = ["recover_pending", "recover_workflow", "resume_claimed"]

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
    recovered = []
    ids = await pending_workflow_ids(
        runtime.db, runtime.executor_id, runtime.application_version, runtime.application_name
    )
    for workflow_id in ids:
        try:
            if await recover_workflow(runtime, workflow_id):
                recovered.append(workflow_id)
        except DBOSException as error:
            logger.error("Could not recover workflow %s: %s", workflow_id, error)
    if ids:
        logger.info("Recovered %d of %d pending workflows", len(recovered), len(ids))
    return recovered


async def recover_workflow(runtime: Runtime, workflow_id: str) -> bool:
    """Count a recovery attempt and resume ``workflow_id`` from its last recorded step."""
    if workflow_id in runtime.active:
        return True
    row = await claim_for_recovery(runtime.db, workflow_id, runtime.executor_id)
    if row is None:
        return False
    return await resume_claimed(runtime, row, has_steps=True) is not None


async def resume_claimed(
    runtime: Runtime, row: asyncpg.Record, *, has_steps: bool
) -> asyncio.Task[Any] | None:
    """Run a workflow this process just claimed (by recovery or from a queue), from its row.

    Replays its recorded steps (read in one query when ``has_steps``). A workflow that crashed
    more often than its ``max_recovery_attempts`` is dead-lettered instead, and one whose
    arguments cannot be read or fail its ``validate_args`` (which may also convert them;
    without one, portable arguments are converted by the function's type hints) or whose
    stored user lacks its required roles is recorded as failed; None then.
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
    recorded: dict[int, StepOutput] = (
        await load_step_outputs(runtime.db, workflow_id) if has_steps else {}
    )
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
    runtime.cancel_stale(workflow_id)
    return launch(runtime, ctx, Invocation(info, bound, args, kwargs))
