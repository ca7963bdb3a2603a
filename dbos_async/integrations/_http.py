"""What the ASGI and WSGI middleware share: the error body, the handler span, header edits."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .._core._errors import DBOSException
from .._core._request import REQUEST_ID_HEADER, Request

__all__ = [
    "LazyMapping",
    "error_body",
    "handler_attributes",
    "with_request_id",
]


def error_body(error: DBOSException) -> dict[str, Any]:
    """The JSON body of an error response for ``error``, as DBOS's FastAPI handler sends it."""
    return {
        "message": error.message,
        "dbos_error_code": str(error.dbos_error_code),
        "dbos_error": type(error).__name__,
    }


def handler_attributes(request: Request) -> dict[str, Any]:
    """DBOS's span attributes for an HTTP handler."""
    attributes: dict[str, Any] = {
        "operationType": "handler",
        "requestID": request.request_id,
        "requestURL": request.url,
        "requestMethod": request.method,
    }
    if request.client is not None:
        attributes["requestIP"] = request.client.host
    return attributes


def with_request_id(headers: list[tuple[str, str]], request_id: str) -> list[tuple[str, str]]:
    """``headers`` with ``x-request-id`` added, unless the app already set one."""
    if any(name.lower() == REQUEST_ID_HEADER for name, _ in headers):
        return headers
    return [*headers, (REQUEST_ID_HEADER, request_id)]


class LazyMapping(Mapping[str, Any]):
    """A read-only mapping computed on each access: path parameters are known after routing,
    which happens after the middleware built the request."""

    def __init__(self, source: Callable[[], Mapping[str, Any] | None]) -> None:
        self._source = source

    def _mapping(self) -> Mapping[str, Any]:
        return self._source() or {}

    def __getitem__(self, key: str) -> Any:
        return self._mapping()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(dict(self._mapping()))

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return repr(dict(self._mapping()))
