"""The dashboard's pages, rendered on the server: workflows, one workflow, queues, one queue."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._core._status import WorkflowStatusString
from .._features import _listing, _observe
from .._features._queue_overview import queue_overview
from ._api_routes import list_filters, queue_json, workflow_detail
from ._html import badge, duration, e, link, page, pretty, query, quoted, when
from ._shapes import workflow_json
from ._state import as_admin

__all__ = ["page_routes"]

_TERMINAL = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


def _actions(workflow: dict[str, Any]) -> str:
    """Cancel / resume / fork buttons (the script asks for confirmation)."""
    wid, status = e(workflow["workflow_id"]), workflow["status"]
    buttons = []
    if status not in _TERMINAL:
        buttons.append(f'<button data-action="cancel" data-workflow="{wid}">Cancel</button>')
    if status != "SUCCESS":
        buttons.append(f'<button data-action="resume" data-workflow="{wid}">Resume</button>')
    buttons.append(
        f'<label>from step <input type="number" min="1" value="1" class="fork-step" '
        f'data-workflow="{wid}"></label>'
        f'<button data-action="fork" data-workflow="{wid}">Fork</button>'
    )
    return f'<div class="actions">{"".join(buttons)}</div>'


def _workflow_rows(request: Request, workflows: list[dict[str, Any]]) -> str:
    rows = []
    for w in workflows:
        ran = None
        if w.get("completed_at") is not None and w.get("created_at") is not None:
            ran = w["completed_at"] - w["created_at"]
        rows.append(
            f'<tr data-workflow-id="{e(w["workflow_id"])}">'
            f"<td>{link(request, '/workflow/' + quoted(w['workflow_id']), w['workflow_id'])}</td>"
            f"<td>{e(w['name'])}</td><td>{badge(w['status'])}</td>"
            f"<td>{e(w.get('queue_name'))}</td><td>{when(w.get('created_at'))}</td>"
            f"<td>{duration(ran)}</td><td>{e(w.get('executor_id'))}</td></tr>"
        )
    if not rows:
        return '<p class="empty">No workflows match.</p>'
    return (
        '<table class="workflows"><thead><tr><th>ID</th><th>Name</th><th>Status</th>'
        "<th>Queue</th><th>Created</th><th>Ran</th><th>Executor</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _filter_form(request: Request) -> str:
    params = request.query_params
    options = "".join(
        f'<option value="{s}"{" selected" if params.get("status") == s else ""}>{s}</option>'
        for s in ["", *WorkflowStatusString]
    )
    fields = "".join(
        f'<label>{label} <input name="{name}" value="{e(params.get(name, ""))}"></label>'
        for name, label in (
            ("name", "Name"),
            ("queue", "Queue"),
            ("user", "User"),
            ("prefix", "ID prefix"),
        )
    )
    return (
        f'<form class="filters" method="get"><label>Status <select name="status">{options}'
        f"</select></label>{fields}<button>Filter</button></form>"
    )


def _timeline(buckets: list[_observe.TimelineBucket], since_ms: int, bucket_ms: int) -> str:
    """Workflows created per minute over the last hour, as stacked SVG bars."""
    colours = {"SUCCESS": "#2e7d32", "ERROR": "#c62828", "CANCELLED": "#757575"}
    count = 60
    top = max((sum(b.counts.values()) for b in buckets), default=0) or 1
    bars = []
    for b in buckets:
        x = (b.start_ms - since_ms) // bucket_ms
        y = 40.0
        for status, n in sorted(b.counts.items()):
            h = 40.0 * n / top
            y -= h
            colour = colours.get(status, "#1565c0")
            bars.append(
                f'<rect x="{x * 5}" y="{y:.1f}" width="4" height="{h:.1f}" fill="{colour}">'
                f"<title>{e(status)}: {n}</title></rect>"
            )
    return (
        f'<svg class="timeline" viewBox="0 0 {count * 5} 40" preserveAspectRatio="none" '
        f'role="img" aria-label="workflows created per minute">{"".join(bars)}</svg>'
    )


async def workflows_page(request: Request) -> Response:
    """The workflow list: filters, counts, the last hour, a page of workflows."""
    filters = list_filters(request)
    found = await as_admin(request, lambda: _listing.list_workflows(**filters))
    counts = await as_admin(request, _observe.workflow_counts)
    bucket_ms = 60_000
    since_ms = (int(time.time() * 1000) // bucket_ms - 59) * bucket_ms
    buckets = await as_admin(request, lambda: _observe.workflow_timeline(since_ms, bucket_ms))
    chips = " ".join(
        f'<a class="chip" href="{e(query(request, status=s, offset=None))}">{badge(s)} {n}</a>'
        for s, n in sorted(counts.items())
    )
    limit, offset = filters["limit"], filters["offset"]
    paging = []
    if offset > 0:
        back = query(request, offset=max(0, offset - limit) or None)
        paging.append(f'<a href="{e(back)}" rel="prev">← Newer</a>')
    if len(found) == limit:
        paging.append(
            f'<a href="{e(query(request, offset=offset + limit))}" rel="next">Older →</a>'
        )
    body = (
        f"<h1>Workflows</h1><div class='counts'>{chips}</div>"
        f"{_timeline(buckets, since_ms, bucket_ms)}{_filter_form(request)}"
        f"{_workflow_rows(request, [workflow_json(w) for w in found])}"
        f'<nav class="paging">{" ".join(paging)}</nav>'
    )
    return page(request, "Workflows", body)


def _steps(request: Request, workflow: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    if not steps:
        return '<p class="empty">No steps recorded.</p>'
    start = workflow.get("created_at") or 0
    ends = [s["completed_at_epoch_ms"] or 0 for s in steps]
    end = max([workflow.get("completed_at") or 0, *ends, start + 1])
    span = max(end - start, 1)
    rows = []
    for s in steps:
        began, ended = s["started_at_epoch_ms"], s["completed_at_epoch_ms"]
        bar = ""
        if began is not None and ended is not None:
            left = 100 * max(began - start, 0) / span
            width = max(100 * (ended - began) / span, 0.5)
            kind = "error" if s["error"] else "ok"
            bar = f'<div class="bar {kind}" style="left:{left:.2f}%;width:{width:.2f}%"></div>'
        child = ""
        if s["child_workflow_id"]:
            child = link(request, "/workflow/" + quoted(s["child_workflow_id"]), "child")
        outcome = f'<div class="error">{e(s["error"])}</div>' if s["error"] else pretty(s["output"])
        rows.append(
            f'<tr class="step"><td>{s["function_id"]}</td><td>{e(s["function_name"])}</td>'
            f'<td class="lane"><div class="track">{bar}</div></td>'
            f"<td>{duration(s['duration_ms'])}</td><td>{outcome}</td><td>{child}</td></tr>"
        )
    return (
        '<table class="steps"><thead><tr><th>#</th><th>Step</th><th>Timeline</th>'
        "<th>Took</th><th>Output / error</th><th>Child</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


async def workflow_page(request: Request) -> Response:
    """One workflow: its fields, buttons, steps on a timeline, events, streams, children."""
    workflow_id = request.path_params["workflow_id"]
    detail = await workflow_detail(request, workflow_id)
    if detail is None:
        body = f"<h1>Workflow {e(workflow_id)}</h1><p class='empty'>No such workflow.</p>"
        response = page(request, "Unknown workflow", body)
        response.status_code = 404
        return response
    w = detail["workflow"]
    shown = (
        "name", "status", "queue_name", "executor_id", "app_version", "authenticated_user",
        "parent_workflow_id", "forked_from", "recovery_attempts", "workflow_timeout_ms",
    )  # fmt: skip
    fields = "".join(
        f"<dt>{e(k)}</dt><dd>{badge(w[k]) if k == 'status' else e(w.get(k))}</dd>"
        for k in shown
        if w.get(k) is not None
    )
    fields += f"<dt>created_at</dt><dd>{when(w.get('created_at'))}</dd>"
    fields += f"<dt>completed_at</dt><dd>{when(w.get('completed_at'))}</dd>"
    outcome = (
        f'<div class="error">{e(w["error"])}</div>' if w.get("error") else pretty(w.get("output"))
    )
    children = _workflow_rows(request, detail["children"]) if detail["children"] else ""
    events = pretty(detail["events"]) if detail["events"] else '<p class="empty">None.</p>'
    streams = pretty(detail["streams"]) if detail["streams"] else '<p class="empty">None.</p>'
    body = (
        f'<h1 data-status="{e(w["status"])}">Workflow <code>{e(workflow_id)}</code> '
        f"{badge(w['status'])}</h1>{_actions(w)}<dl class='fields'>{fields}</dl>"
        f"<h2>Input</h2>{pretty(w.get('input'))}<h2>Output</h2>{outcome}"
        f"<h2>Steps</h2>{_steps(request, w, detail['steps'])}"
        f"<h2>Events</h2>{events}<h2>Streams</h2>{streams}"
        + (f"<h2>Children</h2>{children}" if children else "")
    )
    return page(request, f"Workflow {workflow_id}", body)


def _queue_rows(request: Request, queues: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr data-queue="{e(q["name"])}"><td>{link(request, "/queues/" + quoted(q["name"]), q["name"])}'
        f'</td><td class="depth-enqueued">{q["enqueued"]}</td><td>{q["delayed"]}</td>'
        f'<td class="depth-running">{q["running"]}</td>'
        f"<td>{e(q['settings'].get('concurrency'))}</td>"
        f"<td>{e(q['settings'].get('worker_concurrency'))}</td><td>{e(q['source'])}</td></tr>"
        for q in queues
    )
    return (
        '<table class="queues"><thead><tr><th>Queue</th><th>Enqueued</th><th>Delayed</th>'
        "<th>Running</th><th>Concurrency</th><th>Per worker</th><th>Source</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else '<p class="empty">No queues.</p>'
    )


async def queues_page(request: Request) -> Response:
    """Every queue with its live depth."""
    queues = [queue_json(q) for q in await as_admin(request, queue_overview)]
    return page(request, "Queues", f"<h1>Queues</h1>{_queue_rows(request, queues)}")


async def queue_page(request: Request) -> Response:
    """One queue: its settings, depth, and its unfinished workflows."""
    name = request.path_params["name"]
    queues = [queue_json(q) for q in await as_admin(request, queue_overview)]
    mine = [q for q in queues if q["name"] == name]
    found = await as_admin(
        request,
        lambda: _listing.list_queued_workflows(
            queue_name=name, sort_desc=True, limit=200, load_input=False, load_output=False
        ),
    )
    settings = pretty(mine[0]["settings"]) if mine else '<p class="empty">Not registered.</p>'
    body = (
        f"<h1>Queue <code>{e(name)}</code></h1>{_queue_rows(request, mine)}"
        f"<h2>Settings</h2>{settings}<h2>Unfinished workflows</h2>"
        f"{_workflow_rows(request, [workflow_json(w) for w in found])}"
    )
    return page(request, f"Queue {name}", body)


def page_routes() -> list[Route]:
    """The dashboard's pages."""
    return [
        Route("/", workflows_page),
        Route("/workflow/{workflow_id:path}", workflow_page),
        Route("/queues", queues_page),
        Route("/queues/{name}", queue_page),
    ]
