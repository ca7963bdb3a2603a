"""The optional bearer token, checked on every request (pure ASGI middleware).

Scripts send ``Authorization: Bearer <token>``. A browser cannot set that header on a page or
an ``EventSource``, so opening any page with ``?token=<token>`` once sets a cookie (scoped to
the admin app's path) that later requests carry.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "BearerToken"]

COOKIE = "dbos_admin_token"


class BearerToken:
    """Answer 401 to a request without the token (header, cookie or ``token`` parameter)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self._matches(_bearer(headers.get(b"authorization", b""))) or self._matches(
            _cookie(headers.get(b"cookie", b""))
        ):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self._matches(query.get("token", [""])[0].encode()):
            await self.app(scope, receive, _setting_cookie(send, self._token, scope))
            return
        response = JSONResponse(
            {"error": "a bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _matches(self, given: bytes) -> bool:
        return bool(given) and hmac.compare_digest(given, self._token)


def _bearer(value: bytes) -> bytes:
    scheme, _, credentials = value.partition(b" ")
    return credentials.strip() if scheme.lower() == b"bearer" else b""


def _cookie(value: bytes) -> bytes:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(value.decode("latin-1"))
    except Exception:
        return b""
    morsel = cookies.get(COOKIE)
    return morsel.value.encode("latin-1") if morsel is not None else b""


def _setting_cookie(send: Send, token: bytes, scope: Scope) -> Send:
    path = scope.get("root_path") or "/"
    cookie = f"{COOKIE}={token.decode('latin-1')}; Path={path}; HttpOnly; SameSite=Strict"

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [*message["headers"], (b"set-cookie", cookie.encode())],
            }
        await send(message)

    return sending
