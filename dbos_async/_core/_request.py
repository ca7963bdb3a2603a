"""The HTTP request being served: what ``DBOS.request`` returns.

Web integrations (ASGI and WSGI middleware) open a ``request_scope`` (in ``_context``) around
each request. Inside it, ``DBOS.request`` describes the request, the ``dbos-idempotency-key``
header becomes the ID of the first workflow the request starts, and workflows started from it
keep the request (``WorkflowContext.request``) for ``DBOS.request`` inside their code.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "IDEMPOTENCY_KEY_HEADER",
    "REQUEST_ID_HEADER",
    "Address",
    "Request",
    "request_id_from",
]

REQUEST_ID_HEADER = "x-request-id"
"""The header a request ID is read from (else ``dbos-request-id``) and returned in."""
_ALTERNATE_REQUEST_ID_HEADER = "dbos-request-id"
IDEMPOTENCY_KEY_HEADER = "dbos-idempotency-key"
"""The header whose value becomes the ID of the first workflow a request starts."""


@dataclass(frozen=True, slots=True)
class Address:
    """A network peer: host and port."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Request:
    """The HTTP request a handler (and the workflows it starts) is serving.

    Header names are lower case. ``request_id`` is the ``x-request-id`` (or ``dbos-request-id``)
    header's value, or one generated for the request; it is returned in ``x-request-id``.
    """

    method: str
    url: str
    base_url: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query_params: Mapping[str, str] = field(default_factory=dict)
    path_params: Mapping[str, object] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    client: Address | None = None
    request_id: str = ""


def request_id_from(headers: Mapping[str, str]) -> str:
    """The request ID a client sent (lower-case header names), or a new one."""
    return (
        headers.get(REQUEST_ID_HEADER)
        or headers.get(_ALTERNATE_REQUEST_ID_HEADER)
        or str(uuid.uuid4())
    )
