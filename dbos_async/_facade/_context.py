"""The ``DBOS`` façade's view of the code running now: workflow, step, auth, request, tracing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._core._context import (
    StepStatus,
    current_auth,
    current_request,
    current_step,
    current_workflow,
    set_authentication,
)
from .._core._request import Request
from .._core._runtime import current_runtime
from .._core._tracing import current_span, tracer
from .._features._transactions import current_transaction
from ._base import FacadeBase, classproperty

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["ContextAPI"]


class ContextAPI(FacadeBase):
    """Class properties describing the code running now, and ``set_authentication``."""

    @classproperty
    def logger(cls) -> logging.Logger:
        """The ``dbos_async`` logger."""
        return logging.getLogger("dbos_async")

    @classproperty
    def workflow_id(cls) -> str | None:
        """The ID of the workflow running here, or None."""
        ctx = current_workflow()
        return ctx.workflow_id if ctx is not None else None

    @classproperty
    def step_id(cls) -> int | None:
        """The function ID of the step running here, or None."""
        status = current_step()
        return status.step_id if status is not None else None

    @classproperty
    def step_status(cls) -> StepStatus | None:
        """``StepStatus(step_id, current_attempt, max_attempts)`` inside a step, else None."""
        return current_step()

    @classproperty
    def executor_id(cls) -> str:
        """This process's executor ID (``executor_id`` config, ``DBOS__VMID``, or ``local``)."""
        return current_runtime().executor_id

    @classproperty
    def application_version(cls) -> str:
        """The application version: configured, or a hash of the workflows' source."""
        return current_runtime().application_version

    @classproperty
    def authenticated_user(cls) -> str | None:
        """The authenticated user of the current request or workflow."""
        return current_auth().user

    @classproperty
    def authenticated_roles(cls) -> list[str] | None:
        """The authenticated roles of the current request or workflow."""
        roles = current_auth().roles
        return list(roles) if roles else None

    @classproperty
    def assumed_role(cls) -> str | None:
        """The role the current workflow assumed to pass its role check."""
        return current_auth().assumed_role

    @classproperty
    def request(cls) -> Request | None:
        """The HTTP request served here, in a handler or a workflow it started; else None."""
        return current_request()

    @classproperty
    def span(cls) -> Span:
        """The current OpenTelemetry span (the step's, workflow's or request's), to annotate."""
        return current_span()

    @classproperty
    def tracer(cls) -> Tracer:
        """The OpenTelemetry tracer dbos_async's spans come from, for spans of your own."""
        return tracer()

    @classproperty
    def sql_session(cls) -> Any:
        """Inside a transaction, its SQLAlchemy session: a ``Session`` in a plain function, an
        ``AsyncSession`` in an ``async def``. Elsewhere :class:`DBOSException`."""
        return current_transaction("DBOS.sql_session").session

    @classproperty
    def sql_connection(cls) -> Any:
        """Inside a transaction, its driver connection: an ``asyncpg.Connection`` in an
        ``async def`` (the lean path: no ORM), a ``psycopg.Connection`` in a plain function.
        Its statements are part of the transaction; do not commit or close it."""
        return current_transaction("DBOS.sql_connection").connection

    @classmethod
    def set_authentication(
        cls, authenticated_user: str | None, authenticated_roles: list[str] | None
    ) -> None:
        """Make ``authenticated_user`` with ``authenticated_roles`` the caller from here on
        (in the current context); workflows started afterwards record them."""
        set_authentication(authenticated_user, authenticated_roles)
