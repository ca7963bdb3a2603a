"""``dbos-async dashboard``: the admin API and live dashboard, served against a system database."""

from __future__ import annotations

from typing import Annotated

import typer

from ._target import system_url

__all__ = ["dashboard"]


def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to bind (this machine only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535)] = 3001,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="DBOS_ADMIN_TOKEN",
            help="Require this bearer token (a browser opens /?token=... once).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the workflow dashboard and the admin HTTP API until interrupted (Ctrl+C)."""
    from ..admin import serve_dashboard  # needs the admin extra, only for this command

    serve_dashboard(system_url(ctx), host=host, port=port, token=token)
