"""The public records of workflows and steps: ``WorkflowStatus`` and ``StepInfo``."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

import asyncpg

from ._serialization import Codec

__all__ = ["StepInfo", "WorkflowStatus", "WorkflowStatusString", "status_from_row"]


class WorkflowStatusString(StrEnum):
    """The states a workflow moves through."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    CANCELLED = "CANCELLED"
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"


TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})


@dataclass(slots=True)
class WorkflowStatus:
    """A workflow's recorded state, with DBOS's field names; timestamps are epoch milliseconds."""

    workflow_id: str
    status: str
    name: str
    class_name: str | None
    config_name: str | None
    authenticated_user: str | None
    assumed_role: str | None
    authenticated_roles: list[str] | None
    input: dict[str, Any] | None
    output: Any
    error: BaseException | None
    created_at: int | None
    updated_at: int | None
    queue_name: str | None
    executor_id: str | None
    app_version: str | None
    app_id: str | None
    recovery_attempts: int | None
    workflow_timeout_ms: int | None
    workflow_deadline_epoch_ms: int | None
    deduplication_id: str | None
    priority: int | None
    queue_partition_key: str | None
    forked_from: str | None
    was_forked_from: bool
    parent_workflow_id: str | None
    dequeued_at: int | None
    delay_until_epoch_ms: int | None
    completed_at: int | None
    attributes: Any
    application_name: str | None
    schedule_name: str | None = None


class StepInfo(TypedDict):
    """One recorded operation of a workflow, ordered by ``function_id`` (1-based): a dict,
    as in DBOS (``step["function_name"]``)."""

    function_id: int
    function_name: str
    output: Any
    error: BaseException | None
    child_workflow_id: str | None
    started_at_epoch_ms: int | None
    completed_at_epoch_ms: int | None


def _safe_loads(codec: Codec, data: bytes | None, name: str | None, *, error: bool = False) -> Any:
    """Decode a value (an error, with ``error``) for display; an undecodable value comes back
    as its raw bytes."""
    with contextlib.suppress(Exception):
        return codec.loads_exception(data, name) if error else codec.loads(data, name)
    return data


def _safe_inputs(codec: Codec, data: bytes, name: str | None) -> dict[str, Any] | None:
    """Recorded workflow inputs as ``{"args": tuple, "kwargs": dict}`` (None if undecodable)."""
    with contextlib.suppress(Exception):
        args, kwargs = codec.loads_inputs(data, name)
        return {"args": args, "kwargs": kwargs}
    return None


def status_from_row(
    row: asyncpg.Record, codec: Codec, *, load_input: bool = True, load_output: bool = True
) -> WorkflowStatus:
    """Build a :class:`WorkflowStatus` from a ``workflow_status`` row."""
    fmt = row["serialization"]
    workflow_input = None
    if load_input and row["inputs"] is not None:
        workflow_input = _safe_inputs(codec, row["inputs"], fmt)
    roles = row["authenticated_roles"]
    return WorkflowStatus(
        workflow_id=row["workflow_uuid"],
        status=row["status"],
        name=row["name"],
        class_name=row["class_name"],
        config_name=row["config_name"],
        authenticated_user=row["authenticated_user"],
        assumed_role=row["assumed_role"],
        authenticated_roles=list(roles) if roles is not None else None,
        input=workflow_input,
        output=_safe_loads(codec, row["output"], fmt) if load_output else None,
        error=_safe_loads(codec, row["error"], fmt, error=True) if load_output else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        queue_name=row["queue_name"],
        executor_id=row["executor_id"],
        app_version=row["application_version"],
        app_id=row["application_id"],
        recovery_attempts=row["recovery_attempts"],
        workflow_timeout_ms=row["workflow_timeout_ms"],
        workflow_deadline_epoch_ms=row["workflow_deadline_epoch_ms"],
        deduplication_id=row["deduplication_id"],
        priority=row["priority"],
        queue_partition_key=row["queue_partition_key"],
        forked_from=row["forked_from"],
        was_forked_from=row["was_forked_from"],
        parent_workflow_id=row["parent_workflow_id"],
        dequeued_at=row["started_at_epoch_ms"],
        delay_until_epoch_ms=row["delay_until_epoch_ms"],
        completed_at=row["completed_at"],
        attributes=json.loads(row["attributes"]) if row["attributes"] else None,
        application_name=row["application_name"],
        schedule_name=row["schedule_name"],
    )
