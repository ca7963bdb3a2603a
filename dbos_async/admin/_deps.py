"""The admin extra: Starlette serves the admin app, uvicorn serves it on a socket."""

from __future__ import annotations

import importlib.util

from .._core._errors import DBOSException

__all__ = ["require_admin_extra"]


def require_admin_extra(*modules: str) -> None:
    """Raise a clear error naming ``dbos_async[admin]`` if one of ``modules`` is missing."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise DBOSException(
            f"The admin API and dashboard need {', '.join(missing)}: "
            "pip install 'dbos_async[admin]'"
        )
