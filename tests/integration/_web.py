"""What the web tests' handlers and workflows report of ``DBOS.request``."""

from __future__ import annotations

from typing import Any

from dbos_async import DBOS


def request_view() -> dict[str, Any]:
    """``DBOS.request`` as plain JSON."""
    request = DBOS.request
    assert request is not None
    return {
        "request_id": request.request_id,
        "method": request.method,
        "url": request.url,
        "base_url": request.base_url,
        "path": request.path,
        "path_params": dict(request.path_params),
        "query_params": dict(request.query_params),
        "cookies": dict(request.cookies),
        "client": request.client.host if request.client is not None else None,
        "header": request.headers.get("x-custom"),
    }
