"""JSON shapes: DBOS's admin-server shapes, and the richer ones the dashboard reads."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import Mapping
from typing import Any

from .._core._status import StepInfo, WorkflowStatus

__all__ = ["dbos_workflow", "jsonable", "step_json", "workflow_json"]

_MAX_DEPTH = 8


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; what JSON has no form for becomes its ``repr``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if depth >= _MAX_DEPTH:
        return repr(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value, depth + 1)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return jsonable(fields, depth + 1)
    dump = getattr(value, "model_dump", None)  # pydantic
    if callable(dump):
        try:
            return jsonable(dump(), depth + 1)
        except Exception:
            pass
    return repr(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(jsonable(value))


def dbos_workflow(status: WorkflowStatus) -> dict[str, str | None]:
    """DBOS's ``WorkflowsOutput``: PascalCase keys, every value a string (or null)."""
    return {
        "WorkflowUUID": status.workflow_id,
        "Status": _text(status.status),
        "WorkflowName": _text(status.name),
        "WorkflowClassName": _text(status.class_name),
        "WorkflowConfigName": _text(status.config_name),
        "AuthenticatedUser": _text(status.authenticated_user),
        "AssumedRole": _text(status.assumed_role),
        "AuthenticatedRoles": _json_text(status.authenticated_roles),
        "Input": _json_text(status.input),
        "Output": _json_text(status.output),
        "Request": None,
        "Error": _text(status.error),
        "CreatedAt": _text(status.created_at),
        "UpdatedAt": _text(status.updated_at),
        "QueueName": _text(status.queue_name),
        "ApplicationVersion": _text(status.app_version),
        "ExecutorID": _text(status.executor_id),
        "WorkflowTimeoutMS": _text(status.workflow_timeout_ms),
        "WorkflowDeadlineEpochMS": _text(status.workflow_deadline_epoch_ms),
        "DeduplicationID": _text(status.deduplication_id),
        "Priority": _text(status.priority),
        "QueuePartitionKey": _text(status.queue_partition_key),
        "ForkedFrom": _text(status.forked_from),
        "ParentWorkflowID": _text(status.parent_workflow_id),
        "DequeuedAt": _text(status.dequeued_at),
        "ApplicationName": _text(status.application_name),
    }


def workflow_json(status: WorkflowStatus) -> dict[str, Any]:
    """A workflow with :class:`WorkflowStatus`'s field names, values made JSON-ready."""
    fields = {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}
    shaped = {name: jsonable(value) for name, value in fields.items()}
    shaped["error"] = _text(status.error)
    return shaped


def step_json(step: StepInfo) -> dict[str, Any]:
    """A step with DBOS's keys (output as JSON data, error as text), and its duration."""
    started, completed = step["started_at_epoch_ms"], step["completed_at_epoch_ms"]
    return {
        "function_id": step["function_id"],
        "function_name": step["function_name"],
        "output": jsonable(step["output"]),
        "error": _text(step["error"]),
        "child_workflow_id": step["child_workflow_id"],
        "started_at_epoch_ms": started,
        "completed_at_epoch_ms": completed,
        "duration_ms": completed - started
        if started is not None and completed is not None
        else None,
    }
