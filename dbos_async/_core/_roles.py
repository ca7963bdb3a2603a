"""Role-based access: ``@DBOS.required_roles`` and ``@DBOS.default_required_roles``.

A workflow or step carries a :class:`RoleRequirement`, shared by its wrapper and its
registration, whichever order the decorators run in. A workflow is checked when it is called,
started or enqueued, against the caller's authentication; the role that matched is recorded as
the workflow's ``assumed_role``. A dequeued or recovered workflow is checked again against the
authentication stored with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ._errors import DBOSInvalidArgumentError, DBOSNotAuthorizedError

__all__ = [
    "Auth",
    "RoleRequirement",
    "authorize",
    "default_required_roles",
    "required_roles",
    "role_requirement_of",
]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

_ROLES_ATTR = "__dbos_required_roles__"


@dataclass(frozen=True, slots=True)
class Auth:
    """The authenticated user and roles a workflow runs for."""

    user: str | None = None
    roles: tuple[str, ...] = ()
    assumed_role: str | None = None


@dataclass(slots=True)
class RoleRequirement:
    """The roles a function needs (any one of them); ``None`` lets everyone in."""

    roles: tuple[str, ...] | None = None
    explicit: bool = False
    """Set by ``@required_roles`` on the function itself: a class default does not override it."""


def role_requirement_of(func: Callable[..., Any]) -> RoleRequirement:
    """The requirement attached to ``func`` (creating an empty one, attached, if none is)."""
    requirement = getattr(func, _ROLES_ATTR, None)
    if not isinstance(requirement, RoleRequirement):
        requirement = RoleRequirement()
        setattr(func, _ROLES_ATTR, requirement)
    return requirement


def authorize(requirement: RoleRequirement, auth: Auth, name: str) -> Auth:
    """``auth`` with the matched role assumed; :class:`DBOSNotAuthorizedError` if none matches.

    Roles are tried in the order the function lists them, as DBOS does.
    """
    if not requirement.roles:
        return auth
    if auth.user is None and not auth.roles:
        raise DBOSNotAuthorizedError(
            f"{name} requires one of the roles {list(requirement.roles)}, "
            "but was called without authentication"
        )
    for role in requirement.roles:
        if role in auth.roles:
            return replace(auth, assumed_role=role)
    raise DBOSNotAuthorizedError(
        f"{name} requires one of the roles {list(requirement.roles)}; "
        f"user {auth.user!r} has {list(auth.roles)}"
    )


def _role_tuple(roles: Sequence[str]) -> tuple[str, ...]:
    if isinstance(roles, str) or not all(isinstance(role, str) and role for role in roles):
        raise DBOSInvalidArgumentError(f"Roles must be a list of non-empty strings, got {roles!r}")
    return tuple(roles)


def required_roles(roles: Sequence[str]) -> Callable[[F], F]:
    """Allow calls of a workflow or step only to users holding at least one of ``roles``.

    Above or below ``@DBOS.workflow()`` / ``@DBOS.step()``: the requirement is attached to the
    function, which those decorators share with their wrapper. The check happens when the
    function is called; a denied call raises :class:`DBOSNotAuthorizedError` (HTTP 403 through
    the web middleware).
    """
    wanted = _role_tuple(roles)

    def decorate(func: F) -> F:
        requirement = role_requirement_of(getattr(func, "__func__", func))
        requirement.roles, requirement.explicit = wanted, True
        return func

    return decorate


def default_required_roles(roles: Sequence[str]) -> Callable[[C], C]:
    """Require ``roles`` for every workflow and step of the class that names no roles itself."""
    wanted = _role_tuple(roles)

    def decorate(cls: C) -> C:
        for value in vars(cls).values():
            # Every workflow and step already carries a requirement (its decorator attached it).
            requirement = getattr(getattr(value, "__func__", value), _ROLES_ATTR, None)
            if isinstance(requirement, RoleRequirement) and not requirement.explicit:
                requirement.roles = wanted
        return cls

    return decorate
