"""``dbos-async gc`` and ``dbos-async timeout``: delete old finished workflows, cancel old
unfinished ones."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Annotated

import typer

from ._output import print_json
from ._target import with_client
from ._workflows import JsonOption

__all__ = ["cutoff_ms", "gc", "timeout"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

CUTOFF_HELP = (
    "Created before this: an age (30d, 12h, 15m), an ISO-8601 time, or epoch milliseconds."
)


def cutoff_ms(value: str | None) -> int | None:
    """A cutoff option as epoch milliseconds (a usage error when it is none of the forms)."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    age = _AGE.match(value)
    if age is not None:
        delta = timedelta(**{_UNITS[age.group(2)]: float(age.group(1))})
        return int(time.time() * 1000 - delta / timedelta(milliseconds=1))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an age (30d), an ISO-8601 time or epoch milliseconds"
        ) from None
    return int(moment.astimezone().timestamp() * 1000)


def gc(
    ctx: typer.Context,
    cutoff: Annotated[str | None, typer.Option("--cutoff", help=CUTOFF_HELP)] = None,
    rows: Annotated[
        int | None,
        typer.Option("--rows", min=1, help="Keep only the newest N workflows.", show_default=False),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Delete finished workflows created before --cutoff, or beyond the newest --rows (in
    batches; running workflows are never deleted)."""
    cutoff_epoch_ms = cutoff_ms(cutoff)
    if cutoff_epoch_ms is None and rows is None:
        raise typer.BadParameter("give --cutoff, --rows, or both")
    deleted = with_client(
        ctx,
        lambda client: client.garbage_collect_async(
            cutoff_epoch_timestamp_ms=cutoff_epoch_ms, rows_threshold=rows
        ),
    )
    if json:
        print_json({"deleted": deleted})
    else:
        typer.echo(f"Deleted {deleted} workflow(s)")


def timeout(
    ctx: typer.Context,
    cutoff: Annotated[str, typer.Option("--cutoff", help=CUTOFF_HELP, show_default=False)],
    json: JsonOption = False,
) -> None:
    """Cancel every unfinished workflow (pending, enqueued, delayed) created before --cutoff."""
    cutoff_epoch_ms = cutoff_ms(cutoff)
    assert cutoff_epoch_ms is not None
    cancelled = with_client(ctx, lambda client: client.global_timeout_async(cutoff_epoch_ms))
    if json:
        print_json({"cancelled": cancelled})
    else:
        typer.echo(f"Cancelled {cancelled} workflow(s)")
