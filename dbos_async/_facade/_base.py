"""What every part of the ``DBOS`` façade shares: class properties and the sync bridge."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

from .._core._context import block_on, runtime_here
from .._features._handles import WorkflowHandle, WorkflowHandleAsync

__all__ = ["FacadeBase", "blocking", "blocking_handle", "blocking_handles", "classproperty"]

T = TypeVar("T")
P = ParamSpec("P")


def blocking(name: str, async_form: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """The sync form of ``async_form`` (``DBOS.<name>``): the same parameters, documentation and
    signature, blocking until the async form is done."""

    @functools.wraps(async_form)
    def sync_form(*args: P.args, **kwargs: P.kwargs) -> T:
        return block_on(
            runtime_here(), lambda: async_form(*args, **kwargs), operation=f"DBOS.{name}"
        )

    return sync_form


def blocking_handle(
    name: str, async_form: Callable[P, Awaitable[WorkflowHandleAsync[Any]]]
) -> Callable[P, WorkflowHandle[Any]]:
    """:func:`blocking` for an async form that returns a handle: the sync form returns a sync
    handle."""
    wait = blocking(name, async_form)

    @functools.wraps(async_form)
    def sync_form(*args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[Any]:
        return WorkflowHandle.of(wait(*args, **kwargs))

    return sync_form


def blocking_handles(
    name: str, async_form: Callable[P, Awaitable[list[WorkflowHandleAsync[Any]]]]
) -> Callable[P, list[WorkflowHandle[Any]]]:
    """:func:`blocking` for an async form that returns handles: the sync form returns sync
    handles."""
    wait = blocking(name, async_form)

    @functools.wraps(async_form)
    def sync_form(*args: P.args, **kwargs: P.kwargs) -> list[WorkflowHandle[Any]]:
        return [WorkflowHandle.of(handle) for handle in wait(*args, **kwargs)]

    return sync_form


class classproperty(Generic[T]):
    """A read-only property on the class itself (``DBOS.workflow_id``)."""

    def __init__(self, getter: Callable[[Any], T]) -> None:
        self._getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: object, owner: type) -> T:
        return self._getter(owner)


class FacadeBase:
    """The base of the façade's parts."""

    @classmethod
    def _block(cls, start: Callable[[], Awaitable[T]], name: str) -> T:
        """Run the async form of ``name`` to completion from sync code."""
        return block_on(runtime_here(), start, operation=f"DBOS.{name}")
