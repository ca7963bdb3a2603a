"""The JSON routes the dashboard reads (under ``/api``): workflows with their steps, events and
streams, queue depths, counts by status and over time."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._core._errors import DBOSInvalidArgumentError
from .._features import _listing, _messaging, _observe
from .._features._queue_overview import QueueOverview, queue_overview
from ._shapes import jsonable, step_json, workflow_json
from ._state import as_admin

__all__ = ["PAGE_SIZE", "api_routes", "list_filters", "queue_json", "workflow_detail"]

PAGE_SIZE = 50
_MAX_PAGE = 500


def _int_param(request: Request, name: str, default: int, *, maximum: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DBOSInvalidArgumentError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0 or (maximum is not None and value > maximum):
        raise DBOSInvalidArgumentError(f"{name} must be between 0 and {maximum}, got {value}")
    return value


def list_filters(request: Request) -> dict[str, Any]:
    """The listing arguments of the dashboard's query parameters (newest first, one page)."""
    params = request.query_params
    filters: dict[str, Any] = {
        "limit": _int_param(request, "limit", PAGE_SIZE, maximum=_MAX_PAGE),
        "offset": _int_param(request, "offset", 0),
        "sort_desc": True,
        "load_input": False,
        "load_output": False,
    }
    for param, argument in (
        ("status", "status"),
        ("name", "name"),
        ("queue", "queue_name"),
        ("user", "user"),
        ("prefix", "workflow_id_prefix"),
        ("executor", "executor_id"),
        ("version", "app_version"),
    ):
        if params.get(param):
            filters[argument] = params[param]
    for param, argument in (("from", "start_time"), ("to", "end_time")):
        if params.get(param):
            filters[argument] = params[param]
    return filters


async def workflow_detail(request: Request, workflow_id: str) -> dict[str, Any] | None:
    """A workflow with its steps, events, stream values and children (None if unknown)."""
    found = await as_admin(request, lambda: _listing.list_workflows(workflow_ids=[workflow_id]))
    if not found:
        return None
    steps = await as_admin(request, lambda: _listing.list_workflow_steps(workflow_id))
    events = await as_admin(request, lambda: _messaging.get_all_events(workflow_id))
    streams = await as_admin(request, lambda: _observe.workflow_streams(workflow_id))
    children = await as_admin(
        request,
        lambda: _listing.list_workflows(
            parent_workflow_id=workflow_id, load_input=False, load_output=False
        ),
    )
    return {
        "workflow": workflow_json(found[0]),
        "steps": [step_json(step) for step in steps],
        "events": jsonable(events),
        "streams": jsonable(streams),
        "children": [workflow_json(child) for child in children],
    }


def queue_json(queue: QueueOverview) -> dict[str, Any]:
    """A queue's settings and depth."""
    return {
        "name": queue.name,
        "source": queue.source,
        "application_name": queue.application_name,
        "settings": jsonable(queue.settings),
        "enqueued": queue.enqueued,
        "delayed": queue.delayed,
        "running": queue.running,
        "running_by_executor": queue.running_by_executor,
    }


async def workflows(request: Request) -> Response:
    """A page of workflows, newest first, filtered by the query parameters."""
    filters = list_filters(request)
    found = await as_admin(request, lambda: _listing.list_workflows(**filters))
    return JSONResponse(
        {
            "workflows": [workflow_json(w) for w in found],
            "limit": filters["limit"],
            "offset": filters["offset"],
        }
    )


async def workflow(request: Request) -> Response:
    """One workflow with its steps, events, streams and children, or 404."""
    workflow_id = request.path_params["workflow_id"]
    detail = await workflow_detail(request, workflow_id)
    if detail is None:
        return JSONResponse({"error": f"workflow {workflow_id} does not exist"}, status_code=404)
    return JSONResponse(detail)


async def queues(request: Request) -> Response:
    """Every queue with its settings and its enqueued, delayed and running workflows."""
    found = await as_admin(request, queue_overview)
    return JSONResponse([queue_json(q) for q in found])


async def counts(request: Request) -> Response:
    """How many workflows there are, by status."""
    return JSONResponse(await as_admin(request, _observe.workflow_counts))


async def timeline(request: Request) -> Response:
    """Workflows created in the last ``minutes`` (default 60), by status per bucket of
    ``bucket_seconds`` (default 60)."""
    minutes = _int_param(request, "minutes", 60, maximum=60 * 24 * 31)
    bucket_seconds = max(1, _int_param(request, "bucket_seconds", 60))
    since_ms = int(time.time() * 1000) - minutes * 60_000
    buckets = await as_admin(
        request, lambda: _observe.workflow_timeline(since_ms, bucket_seconds * 1000)
    )
    return JSONResponse(
        {
            "since_ms": since_ms,
            "bucket_ms": bucket_seconds * 1000,
            "buckets": [{"start_ms": b.start_ms, "counts": b.counts} for b in buckets],
        }
    )


def api_routes() -> list[Route]:
    """The dashboard's JSON routes, relative to the app (``/api/...``)."""
    return [
        Route("/api/workflows", workflows),
        Route("/api/workflows/{workflow_id}", workflow),
        Route("/api/queues", queues),
        Route("/api/counts", counts),
        Route("/api/timeline", timeline),
    ]
