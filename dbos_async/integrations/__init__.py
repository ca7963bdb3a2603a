"""Web framework integrations: ASGI (Starlette, FastAPI) and WSGI (Flask).

``DBOS(fastapi=app)``, ``DBOS(starlette=app)`` and ``DBOS(flask=app)`` install these for you;
the middleware classes are public for apps that compose their own stack.
"""

from __future__ import annotations

from ._asgi import DBOSASGIMiddleware
from ._wsgi import DBOSWSGIMiddleware

__all__ = ["DBOSASGIMiddleware", "DBOSWSGIMiddleware"]
