"""A WSGI middleware giving each request its DBOS context, and the Flask hooks.

Flask routes are sync: the workflows they call run on the engine's background loop, which the
middleware launches on the first request when the app did not (so a server that forks workers,
like gunicorn, launches in each worker, after the fork).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.util import application_uri, request_uri

from .._core._context import request_scope
from .._core._errors import DBOSException, DBOSInvalidArgumentError
from .._core._request import Address, Request, request_id_from
from .._core._tracing import traced
from ._http import LazyMapping, error_body, handler_attributes, with_request_id

__all__ = ["DBOSWSGIMiddleware", "install_flask", "request_from_environ"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def _headers(environ: Environ) -> dict[str, str]:
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _flask_view_args() -> Mapping[str, Any] | None:
    try:
        import flask
    except ImportError:
        return None
    return flask.request.view_args if flask.has_request_context() else None


def request_from_environ(environ: Environ) -> Request:
    """Describe a WSGI request (Flask's view arguments become the path parameters)."""
    headers = _headers(environ)
    cookies = SimpleCookie(headers.get("cookie", ""))
    host = environ.get("REMOTE_ADDR")
    port = str(environ.get("REMOTE_PORT", ""))
    return Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        url=request_uri(environ),
        base_url=application_uri(environ),
        path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        headers=headers,
        query_params=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
        path_params=LazyMapping(_flask_view_args),
        cookies={name: morsel.value for name, morsel in cookies.items()},
        client=Address(host, int(port) if port.isdigit() else 0) if host else None,
        request_id=request_id_from(headers),
    )


class DBOSWSGIMiddleware:
    """Per request: ``DBOS.request``, the ``x-request-id`` (read, else generated, and returned),
    the ``dbos-idempotency-key`` header as the first started workflow's ID, and a handler span.

    ``ensure_launched``, if given, runs before each request (it launches DBOS the first time).
    """

    def __init__(self, app: WSGIApp, ensure_launched: Callable[[], None] | None = None) -> None:
        self.app = app
        self._ensure_launched = ensure_launched

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._ensure_launched is not None:
            self._ensure_launched()
        request = request_from_environ(environ)
        with (
            request_scope(request),
            traced(request.path, lambda: handler_attributes(request)) as span,
        ):

            def start_with_request_id(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                if span is not None:
                    span.set_attribute("responseCode", int(status.split(" ", 1)[0]))
                return start_response(
                    status, with_request_id(list(headers), request.request_id), exc_info
                )

            return self.app(environ, start_with_request_id)


def install_flask(app: Any, ensure_launched: Callable[[], None]) -> None:
    """Hook a Flask app: the middleware around ``app.wsgi_app``, launching DBOS on the first
    request, and JSON responses for :class:`DBOSException`."""
    if not hasattr(app, "wsgi_app") or not hasattr(app, "register_error_handler"):
        raise DBOSInvalidArgumentError(f"{app!r} is not a Flask application")

    def dbos_error_response(error: DBOSException) -> Any:
        import flask

        return flask.jsonify(error_body(error)), error.status_code

    app.wsgi_app = DBOSWSGIMiddleware(app.wsgi_app, ensure_launched)
    app.register_error_handler(DBOSException, dbos_error_response)
