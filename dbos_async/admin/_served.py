"""Serving the admin app on a socket: inside the engine (``run_admin_server=True``) or alone
(``dbos-async dashboard``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from .._facade._client import DBOSClient
from ._app import admin_app, build_admin_app
from ._deps import require_admin_extra

if TYPE_CHECKING:
    from ._state import EngineControl

__all__ = ["AdminServer", "serve_dashboard"]

logger = logging.getLogger("dbos_async")

_STOP_SECONDS = 5.0


def _bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket, so a taken port fails here and port 0 gets a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class AdminServer:
    """The admin app served by uvicorn as a task on the running event loop."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 3001) -> None:
        require_admin_extra("uvicorn")
        self.app = app
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None
        self._server: object | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_engine(
        cls, client: DBOSClient, engine: EngineControl, host: str, port: int, token: str | None
    ) -> AdminServer:
        """The server an engine runs: its own client (closed with it), the engine's controls."""
        app = build_admin_app(client, token=token, engine=engine, owns_client=True)
        return cls(app, host, port)

    async def start(self) -> None:
        """Bind the port (its errors raise here) and start serving in the background."""
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # the application owns the process's signals

        self._socket = _bound_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve([self._socket]), name="dbos-admin-server")
        logger.info("Admin server on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        """End the live streams, stop serving, and close the app's client."""
        state = getattr(self.app.state, "admin", None)
        if state is not None:
            await state.feed.close()
        server, task = self._server, self._task
        if server is not None and task is not None:
            server.should_exit = True  # type: ignore[attr-defined]
            try:
                await asyncio.wait_for(asyncio.shield(task), _STOP_SECONDS)
            except TimeoutError:
                server.force_exit = True  # type: ignore[attr-defined]
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._socket is not None:
            self._socket.close()
        self._server = self._task = self._socket = None


def serve_dashboard(
    system_database_url: str,
    host: str = "127.0.0.1",
    port: int = 3001,
    token: str | None = None,
) -> None:
    """Serve the admin API and dashboard on ``host:port`` against a system database, until
    interrupted (Ctrl+C). Blocks; for ``dbos-async dashboard``."""
    require_admin_extra("uvicorn")
    import uvicorn

    # Fail now, in one line, on a database that is away or holds no system tables.
    DBOSClient(system_database_url).destroy()
    app = admin_app(system_database_url=system_database_url, token=token)
    print(f"dbos_async dashboard on http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
