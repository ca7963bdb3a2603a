"""A pure ASGI middleware giving each HTTP request its DBOS context, and the Starlette hooks.

The middleware wraps the app's ``send`` only: the body streams through untouched, nothing is
buffered, and the handler runs in the middleware's own task (unlike ``BaseHTTPMiddleware``),
so context variables set here reach the handler and the workflows it starts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.requests import HTTPConnection
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response

from .._core._context import request_scope
from .._core._errors import DBOSException, DBOSInvalidArgumentError
from .._core._request import Address, Request, request_id_from
from .._core._tracing import traced
from ._http import LazyMapping, error_body, handler_attributes, with_request_id

__all__ = ["DBOSASGIMiddleware", "install_starlette", "request_from_scope"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


def request_from_scope(scope: Scope) -> Request:
    """Describe an ASGI HTTP request (path parameters are read once routing has set them)."""
    connection = HTTPConnection(scope)
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    client = connection.client
    return Request(
        method=scope.get("method", "GET"),
        url=str(connection.url),
        base_url=str(connection.base_url),
        path=scope.get("path", "/"),
        headers=headers,
        query_params=dict(connection.query_params),
        path_params=LazyMapping(lambda: scope.get("path_params")),
        cookies=dict(connection.cookies),
        client=Address(client.host, client.port) if client is not None else None,
        request_id=request_id_from(headers),
    )


class DBOSASGIMiddleware:
    """Per HTTP request: ``DBOS.request``, the request ID (read from ``x-request-id`` or
    ``dbos-request-id``, else generated, and returned in ``x-request-id``), the
    ``dbos-idempotency-key`` header as the first started workflow's ID, a handler span, and
    :class:`DBOSException` turned into a JSON error response when the app did not answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = request_from_scope(scope)
        started = False
        with (
            request_scope(request),
            traced(request.path, lambda: handler_attributes(request)) as span,
        ):

            async def send_with_request_id(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    headers = [
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in message.get("headers", [])
                    ]
                    headers = with_request_id(headers, request.request_id)
                    message = {
                        **message,
                        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
                    }
                    if span is not None:
                        span.set_attribute("responseCode", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_with_request_id)
            except DBOSException as error:
                if started:
                    raise
                await _send_error(send_with_request_id, error)


async def _send_error(send: Send, error: DBOSException) -> None:
    body = json.dumps(error_body(error)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _dbos_error_response(request: StarletteRequest, error: Exception) -> Response:
    assert isinstance(error, DBOSException)
    return JSONResponse(error_body(error), status_code=error.status_code)


def install_starlette(app: Any, lifespan: Callable[[], AbstractAsyncContextManager[None]]) -> None:
    """Hook a Starlette (or FastAPI) app: DBOS's ``lifespan`` inside the app's own, the
    middleware, and JSON responses for :class:`DBOSException`.

    As in DBOS Transact, the engine launches after the app's own startup, so workflows it
    recovers find the resources that startup opens, and it stops before the app's shutdown
    closes them.
    """
    router = getattr(app, "router", None)
    if router is None or not hasattr(router, "lifespan_context"):
        raise DBOSInvalidArgumentError(f"{app!r} is not a Starlette or FastAPI application")
    app_lifespan = router.lifespan_context

    @asynccontextmanager
    async def app_then_dbos(app_: Any) -> AsyncIterator[Any]:
        async with app_lifespan(app_) as state, lifespan():
            yield state

    router.lifespan_context = app_then_dbos
    app.add_middleware(DBOSASGIMiddleware)
    app.add_exception_handler(DBOSException, _dbos_error_response)
