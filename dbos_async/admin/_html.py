"""HTML building blocks of the dashboard: the layout, escaping, times, status badges."""

from __future__ import annotations

import datetime
import json
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = [
    "FRAGMENT_HEADER",
    "base_path",
    "badge",
    "duration",
    "e",
    "link",
    "page",
    "pretty",
    "query",
    "quoted",
    "when",
]

FRAGMENT_HEADER = "x-dashboard-fragment"
"""A request with this header gets only the page's ``<main>`` (the live refresh)."""


def e(value: Any) -> str:
    """``value`` as escaped HTML text (empty for None)."""
    return "" if value is None else escape(str(value))


def base_path(request: Request) -> str:
    """Where the admin app is mounted (``""`` at the root, ``"/dbos"`` under a mount)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def link(request: Request, path: str, text: Any, **attrs: str) -> str:
    """An ``<a>`` to ``path`` inside the admin app."""
    extra = "".join(f' {k}="{e(v)}"' for k, v in attrs.items())
    return f'<a href="{e(base_path(request) + path)}"{extra}>{e(text)}</a>'


def query(request: Request, **changes: Any) -> str:
    """The current query string with ``changes`` applied (None removes a parameter)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return "?" + urlencode(params) if params else "?"


def quoted(value: str) -> str:
    """``value`` escaped for a URL path segment."""
    return quote(value, safe="")


def when(epoch_ms: int | None) -> str:
    """An epoch-milliseconds time as local ISO text (with the raw value in a tooltip)."""
    if epoch_ms is None:
        return ""
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000).astimezone()
    return f'<time title="{epoch_ms}">{e(moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])}</time>'


def duration(ms: int | float | None) -> str:
    """A duration in milliseconds as short text."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.1f} min"


def badge(status: str | None) -> str:
    """A status as a coloured badge."""
    return f'<span class="badge status-{e(status)}">{e(status)}</span>'


def pretty(value: Any) -> str:
    """JSON data as an escaped ``<pre>`` block."""
    return f"<pre>{e(json.dumps(value, indent=2, ensure_ascii=False, default=str))}</pre>"


def page(request: Request, title: str, body: str) -> HTMLResponse:
    """``body`` in the dashboard's layout (or alone, for a live refresh)."""
    if request.headers.get(FRAGMENT_HEADER):
        return HTMLResponse(body)
    base = base_path(request)
    nav = " ".join((link(request, "/", "Workflows"), link(request, "/queues", "Queues")))
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · dbos_async</title>
<link rel="stylesheet" href="{e(base)}/static/dashboard.css">
</head>
<body data-base="{e(base)}">
<header><strong>dbos_async</strong> <nav>{nav}</nav>
<span id="live" class="live" title="live updates">connecting…</span></header>
<main id="content">{body}</main>
<script src="{e(base)}/static/dashboard.js"></script>
</body></html>"""
    return HTMLResponse(html)
