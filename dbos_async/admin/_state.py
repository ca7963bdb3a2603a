"""What every route of an admin app reaches: its client, the engine in the process (if any) and
the live feed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request

from .._facade._client import DBOSClient
from ._bridge import as_client

if TYPE_CHECKING:
    from ._live import Feed

__all__ = ["AdminState", "EngineControl", "admin_state", "as_admin"]


class EngineControl(Protocol):
    """What an engine running in this process lets the admin app do."""

    async def recover_executors(self, executor_ids: list[str]) -> None:
        """Take over (or, for this executor, resume) the PENDING work of these executors."""

    async def deactivate(self) -> None:
        """Stop starting new work here (dispatcher and scheduler)."""

    def checkpoint_batches(self) -> dict[str, tuple[int, int]]:
        """Per group-commit writer: ``(batches, rows)`` written since launch."""


@dataclass(slots=True)
class AdminState:
    """One admin app's collaborators."""

    client: DBOSClient
    engine: EngineControl | None
    feed: Feed


def admin_state(request: Request) -> AdminState:
    """The state of the admin app serving ``request``."""
    state: AdminState = request.app.state.admin
    return state


async def as_admin(request: Request, call: Callable[[], Any]) -> Any:
    """Run an engine feature (``call`` returns its coroutine) under the app's client scope."""
    return await as_client(admin_state(request).client, call)
