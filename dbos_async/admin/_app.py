"""``admin_app``: the admin API and the dashboard as one Starlette application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from .._core._errors import (
    DBOSDatabaseUnavailableError,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
)
from .._facade._client import DBOSClient
from ._api_routes import api_routes
from ._auth import BearerToken
from ._dbos_routes import dbos_routes
from ._live import Feed, live_routes
from ._metrics import metrics_routes
from ._pages import page_routes
from ._state import AdminState

if TYPE_CHECKING:
    from ._state import EngineControl

__all__ = ["admin_app", "build_admin_app"]

STATIC = Path(__file__).parent / "static"


async def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DBOSNonExistentWorkflowError):
        status = 404
    elif isinstance(exc, DBOSInvalidArgumentError):
        status = 400
    elif isinstance(exc, DBOSDatabaseUnavailableError):
        status = 503
    else:
        status = 500
    return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=status)


def build_admin_app(
    client: DBOSClient,
    *,
    token: str | None = None,
    engine: EngineControl | None = None,
    owns_client: bool = False,
) -> Starlette:
    """The admin app on ``client`` (closed with the app when ``owns_client``), with the
    recovery, deactivation and checkpoint figures of ``engine`` when one runs here."""
    feed = Feed(client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await feed.close()
            if owns_client:
                await client.destroy_async()

    routes: list[BaseRoute] = [
        *dbos_routes(),
        *api_routes(),
        *live_routes(feed),
        *metrics_routes(),
        *page_routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(BearerToken, token=token)] if token else []
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={DBOSException: _error},
        lifespan=lifespan,
    )
    app.state.admin = AdminState(client=client, engine=engine, feed=feed)
    return app


def admin_app(
    *,
    system_database_url: str | None = None,
    client: DBOSClient | None = None,
    token: str | None = None,
) -> Starlette:
    """The admin HTTP API and the workflow dashboard, as a Starlette app to mount or serve.

    It works through ``client`` (or a client it makes on ``system_database_url``, else
    ``DBOS_SYSTEM_DATABASE_URL``, closed with the app), so it needs no engine in the process:
    ``app.mount("/dbos", admin_app(system_database_url=url))``. With ``token``, every request
    must carry ``Authorization: Bearer <token>`` (a browser opens a page once with
    ``?token=<token>``, which sets a cookie). Serves DBOS's admin routes, ``/api/...`` for the
    dashboard, ``/metrics`` and the dashboard at ``/``.
    """
    if client is not None and system_database_url is not None:
        raise DBOSInvalidArgumentError("pass system_database_url or client, not both")
    owns = client is None
    if client is None:
        client = DBOSClient(system_database_url, lazy=True)
    return build_admin_app(client, token=token, owns_client=owns)
