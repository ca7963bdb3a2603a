"""The admin HTTP API and the live workflow dashboard (``pip install 'dbos_async[admin]'``).

Mount it in a Starlette or FastAPI app, ``app.mount("/dbos", admin_app(...))``; let the engine
serve it (``run_admin_server=True``); or serve it alone against any system database with
``dbos-async dashboard`` (:func:`serve_dashboard`).
"""

from __future__ import annotations

from ._deps import require_admin_extra

require_admin_extra("starlette")

from ._app import admin_app  # noqa: E402
from ._served import AdminServer, serve_dashboard  # noqa: E402

__all__ = ["AdminServer", "admin_app", "serve_dashboard"]
