"""DBOS's admin routes, with DBOS's paths and shapes (``reference/dbos-api.md`` §6)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .._core._context import SetWorkflowID
from .._core._errors import DBOSInvalidArgumentError
from .._features import _listing, _maintenance, _management
from .._features._forks import fork_workflow
from .._features._queue_overview import queue_overview
from ._shapes import dbos_workflow, step_json
from ._state import admin_state, as_admin

__all__ = ["dbos_routes", "json_body"]

# POST /workflows and POST /queues: DBOS's body keys and the listing parameters they set.
_FILTERS = {
    "workflow_uuids": "workflow_ids",
    "authenticated_user": "user",
    "start_time": "start_time",
    "end_time": "end_time",
    "status": "status",
    "application_version": "app_version",
    "forked_from": "forked_from",
    "parent_workflow_id": "parent_workflow_id",
    "workflow_name": "name",
    "limit": "limit",
    "offset": "offset",
    "sort_desc": "sort_desc",
    "workflow_id_prefix": "workflow_id_prefix",
    "load_input": "load_input",
    "load_output": "load_output",
    "executor_id": "executor_id",
}


async def json_body(request: Request, default: Any) -> Any:
    """The request's JSON body (``default`` when empty); a bad body is a 400."""
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        return await request.json()
    except ValueError:
        raise DBOSInvalidArgumentError("the request body is not JSON") from None


async def _object_body(request: Request) -> dict[str, Any]:
    body = await json_body(request, {})
    if not isinstance(body, dict):
        raise DBOSInvalidArgumentError("the request body must be a JSON object")
    return body


def _filters(body: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    known = {**_FILTERS, **extra}
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise DBOSInvalidArgumentError(f"unknown filter(s): {', '.join(unknown)}")
    return {known[key]: value for key, value in body.items() if value is not None}


async def healthz(request: Request) -> Response:
    """Answer ``healthy`` (the process serves; the database is not asked)."""
    return PlainTextResponse("healthy")


async def deactivate(request: Request) -> Response:
    """Stop starting new work in this process (an engine's dispatcher and scheduler)."""
    engine = admin_state(request).engine
    if engine is not None:
        await engine.deactivate()
    return PlainTextResponse("deactivated")


async def recovery(request: Request) -> Response:
    """Recover the PENDING workflows of the executors listed in the body; their IDs."""
    executor_ids = await json_body(request, None)
    if not isinstance(executor_ids, list) or not all(isinstance(e, str) for e in executor_ids):
        raise DBOSInvalidArgumentError("the body must be a JSON list of executor IDs")
    engine = admin_state(request).engine
    if engine is None:
        return JSONResponse(
            {"error": "no engine runs in this process: recovery needs the workflows' code"},
            status_code=503,
        )
    pending = await as_admin(
        request,
        lambda: _listing.list_workflows(
            status="PENDING", executor_id=executor_ids, load_input=False, load_output=False
        ),
    )
    await engine.recover_executors(executor_ids)
    return JSONResponse([w.workflow_id for w in pending])


async def queues_metadata(request: Request) -> Response:
    """Each queue's name, concurrency, worker concurrency and rate limit."""
    queues = await as_admin(request, queue_overview)
    return JSONResponse(
        [
            {
                "name": q.name,
                "concurrency": q.settings.get("concurrency"),
                "workerConcurrency": q.settings.get("worker_concurrency"),
                "rateLimit": (
                    {
                        "limit": q.settings["rate_limit_max"],
                        "period": q.settings.get("rate_limit_period_sec"),
                    }
                    if q.settings.get("rate_limit_max") is not None
                    else None
                ),
            }
            for q in queues
        ]
    )


async def get_workflow(request: Request) -> Response:
    """One workflow in DBOS's ``WorkflowsOutput`` shape, or 404."""
    workflow_id = request.path_params["workflow_id"]
    found = await as_admin(request, lambda: _listing.list_workflows(workflow_ids=[workflow_id]))
    if not found:
        return JSONResponse({"error": f"workflow {workflow_id} does not exist"}, status_code=404)
    return JSONResponse(dbos_workflow(found[0]))


async def workflow_steps(request: Request) -> Response:
    """A workflow's recorded steps."""
    workflow_id = request.path_params["workflow_id"]
    steps = await as_admin(request, lambda: _listing.list_workflow_steps(workflow_id))
    return JSONResponse([step_json(step) for step in steps])


async def list_workflows(request: Request) -> Response:
    """The workflows matching the body's filters."""
    filters = _filters(await _object_body(request), {})
    found = await as_admin(request, lambda: _listing.list_workflows(**filters))
    return JSONResponse([dbos_workflow(w) for w in found])


async def list_queued(request: Request) -> Response:
    """The queued workflows matching the body's filters (and ``queue_name``)."""
    filters = _filters(await _object_body(request), {"queue_name": "queue_name"})
    found = await as_admin(request, lambda: _listing.list_queued_workflows(**filters))
    return JSONResponse([dbos_workflow(w) for w in found])


async def cancel(request: Request) -> Response:
    """Cancel a workflow wherever it runs."""
    workflow_id = request.path_params["workflow_id"]
    await as_admin(request, lambda: _management.cancel_workflow(workflow_id))
    return Response(status_code=204)


async def resume(request: Request) -> Response:
    """Run an unfinished (or cancelled) workflow again from its last recorded step."""
    workflow_id = request.path_params["workflow_id"]
    await as_admin(request, lambda: _management.resume_workflow(workflow_id))
    return Response(status_code=204)


async def _fork(request: Request, start_step: int, body: dict[str, Any]) -> Response:
    workflow_id = request.path_params["workflow_id"]
    new_id = body.get("new_workflow_id")
    version = body.get("application_version")

    async def fork() -> str:
        scope: AbstractContextManager[Any] = (
            SetWorkflowID(new_id) if new_id is not None else contextlib.nullcontext()
        )
        with scope:
            handle = await fork_workflow(workflow_id, start_step, application_version=version)
        return handle.workflow_id

    return JSONResponse({"workflow_id": await as_admin(request, fork)})


async def restart(request: Request) -> Response:
    """Start a copy of a workflow that runs it all again; the copy's ID."""
    return await _fork(request, 1, {})


async def fork(request: Request) -> Response:
    """Start a copy of a workflow from ``start_step`` (default 1); the copy's ID."""
    body = await _object_body(request)
    return await _fork(request, body.get("start_step", 1), body)


async def garbage_collect(request: Request) -> Response:
    """Delete finished workflows older than a cutoff or beyond the newest ``rows_threshold``."""
    body = await _object_body(request)
    await as_admin(
        request,
        lambda: _maintenance.garbage_collect(
            cutoff_epoch_timestamp_ms=body.get("cutoff_epoch_timestamp_ms"),
            rows_threshold=body.get("rows_threshold"),
        ),
    )
    return Response(status_code=204)


async def global_timeout(request: Request) -> Response:
    """Cancel every unfinished workflow created before ``cutoff_epoch_timestamp_ms``."""
    body = await _object_body(request)
    cutoff: Any = body.get("cutoff_epoch_timestamp_ms")  # checked by global_timeout
    await as_admin(request, lambda: _maintenance.global_timeout(cutoff))
    return Response(status_code=204)


def dbos_routes() -> list[Route]:
    """The routes, with DBOS's paths."""
    return [
        Route("/dbos-healthz", healthz),
        Route("/deactivate", deactivate),
        Route("/dbos-workflow-recovery", recovery, methods=["POST"]),
        Route("/dbos-workflow-queues-metadata", queues_metadata),
        Route("/dbos-garbage-collect", garbage_collect, methods=["POST"]),
        Route("/dbos-global-timeout", global_timeout, methods=["POST"]),
        Route("/workflows", list_workflows, methods=["POST"]),
        Route("/queues", list_queued, methods=["POST"]),
        Route("/workflows/{workflow_id}", get_workflow),
        Route("/workflows/{workflow_id}/steps", workflow_steps),
        Route("/workflows/{workflow_id}/cancel", cancel, methods=["POST"]),
        Route("/workflows/{workflow_id}/resume", resume, methods=["POST"]),
        Route("/workflows/{workflow_id}/restart", restart, methods=["POST"]),
        Route("/workflows/{workflow_id}/fork", fork, methods=["POST"]),
    ]
