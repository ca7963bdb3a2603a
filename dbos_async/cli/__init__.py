"""The ``dbos-async`` command line: inspect and steer workflows, queues and schedules in a
system database, migrate or reset it, and run a Postgres for development.

It needs the ``cli`` extra (typer and rich); :func:`main` says how to get it when missing.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_MISSING_EXTRA = "dbos-async needs its command-line extra: pip install 'dbos_async[cli]'"


def main() -> None:
    """Run the ``dbos-async`` command line (the console script and ``python -m dbos_async``)."""
    try:
        import rich  # noqa: F401 - checked here so that a missing extra is one line
        import typer  # noqa: F401
    except ImportError:
        print(_MISSING_EXTRA, file=sys.stderr)
        raise SystemExit(1) from None
    from ._app import app

    app(prog_name="dbos-async")
