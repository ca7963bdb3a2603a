"""Starting one tick of a stored schedule: the workflow enqueued under its tick's ID."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from .._core._context import SetWorkflowID
from .._core._errors import DBOSWorkflowFunctionNotFoundError
from .._core._registry import WorkflowInfo
from .._core._runtime import Runtime
from .._sysdb._schedules import record_last_tick
from ._enqueue import INTERNAL_QUEUE, EnqueueSettings, enqueue_on
from ._workflow import prepare_call

__all__ = ["enqueue_tick"]


async def enqueue_tick(
    runtime: Runtime, row: Any, tick: datetime, workflow_id: str, *, last_fired: bool = False
) -> str:
    """Enqueue the run of schedule ``row`` for ``tick`` as ``workflow_id`` (a tick enqueued
    already is left as it is); its ID. With ``last_fired``, record ``tick`` as the schedule's
    last tick.

    A schedule made with ``create_schedule`` calls the workflow with ``(tick, context)``; one
    declared with ``@DBOS.scheduled`` with ``(tick, actual_time)``, as in DBOS. The run is not
    pinned to an application version: the latest one runs it.
    """
    name = row["workflow_name"]
    if row["declared_in_code"]:
        args: tuple[Any, ...] = (tick, runtime.clock.now_datetime())
    else:
        context = row["context"]
        args = (
            tick,
            None if context is None else runtime.codec.loads(context, row["context_serialization"]),
        )
    info = runtime.registry.workflows.get(name) or WorkflowInfo(
        name=name, func=_elsewhere, is_async=True, class_name=row["workflow_class_name"]
    )
    with SetWorkflowID(workflow_id):
        call = prepare_call(info, args, {}, identity=(row["workflow_class_name"], None))
    options = dataclasses.replace(
        EnqueueSettings.checked(pin_version=False, application_name=row["application_name"]),
        schedule_name=row["schedule_name"],
    )
    handle = await enqueue_on(runtime, call, row["queue_name"] or INTERNAL_QUEUE, options)
    if last_fired:
        await record_last_tick(runtime.db, row["schedule_name"], tick.isoformat())
    return handle.workflow_id


def _elsewhere(*_args: Any, **_kwargs: Any) -> Any:
    raise DBOSWorkflowFunctionNotFoundError(
        "", "this workflow is not registered in this process; another process runs it"
    )
