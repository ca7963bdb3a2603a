"""What every part of the ``DBOS`` façade shares: class properties and the sync bridge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .._core._context import block_on, runtime_here

__all__ = ["FacadeBase", "classproperty"]

T = TypeVar("T")


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
