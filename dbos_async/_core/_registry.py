"""What the decorators register: workflow functions, DBOS classes and configured instances.

A workflow is recovered by name, so every process must register the same names. The registry
outlives a runtime (``DBOS.destroy()`` keeps it unless ``destroy_registry=True``), because
test suites decorate at import time and launch a new runtime for every test.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import DBOSConflictingRegistrationError, DBOSWorkflowFunctionNotFoundError
from ._roles import RoleRequirement

__all__ = [
    "ArgsValidator",
    "DBOSConfiguredInstance",
    "MethodKind",
    "Registry",
    "WorkflowInfo",
    "default_registry",
]

MethodKind = Literal["function", "instance", "class", "static"]

ArgsValidator = Callable[[tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]
"""``@DBOS.workflow(validate_args=...)``: recorded ``(args, kwargs)`` in, what the function gets out."""


@dataclass(slots=True)
class WorkflowInfo:
    """A registered workflow function and how to call it on recovery."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    max_recovery_attempts: int | None = 100
    kind: MethodKind = "function"
    class_name: str | None = None
    roles: RoleRequirement = field(default_factory=RoleRequirement)
    validate_args: ArgsValidator | None = None
    """Checks (and may convert) the arguments of a run from the workflow's row."""
    serialization: str | None = None
    """The format its inputs, output and error are recorded in (None: the configured one)."""


@dataclass
class Registry:
    """Workflows by name, DBOS classes by name, configured instances by ``class/config``."""

    workflows: dict[str, WorkflowInfo] = field(default_factory=dict)
    classes: dict[str, type] = field(default_factory=dict)
    instances: dict[str, object] = field(default_factory=dict)
    queues: dict[str, Any] = field(default_factory=dict)
    schedules: dict[str, Any] = field(default_factory=dict)

    def add_workflow(self, info: WorkflowInfo) -> None:
        """Register a workflow; the same name for another function is an error."""
        existing = self.workflows.get(info.name)
        if existing is not None and existing.func is not info.func:
            if _same_definition(existing.func, info.func):
                # A module imported twice (e.g. as __main__ and by name): keep the latest.
                pass
            else:
                raise DBOSConflictingRegistrationError(
                    info.name,
                    f"A workflow named {info.name!r} is already registered for another "
                    "function; give one of them a distinct name=",
                )
        self.workflows[info.name] = info

    def add_class(self, class_name: str, cls: type) -> None:
        """Register a DBOS class under its unique name."""
        existing = self.classes.get(class_name)
        if existing is not None and existing is not cls and existing.__module__ != cls.__module__:
            raise DBOSConflictingRegistrationError(
                class_name, f"A DBOS class named {class_name!r} is already registered"
            )
        self.classes[class_name] = cls

    def add_queue(self, queue: Any) -> None:
        """Register a queue this process dispatches from (a later declaration replaces it)."""
        self.queues[queue.name] = queue

    def add_instance(self, class_name: str, config_name: str, instance: object) -> None:
        """Register a configured instance so its workflows can be recovered."""
        self.instances[f"{class_name}/{config_name}"] = instance

    def find_workflow(self, workflow_id: str, name: str) -> WorkflowInfo:
        """The workflow registered under ``name``, or a clear error."""
        info = self.workflows.get(name)
        if info is None:
            raise DBOSWorkflowFunctionNotFoundError(
                workflow_id, f"no workflow named {name!r} is registered in this process"
            )
        return info

    def bound_target(
        self, workflow_id: str, info: WorkflowInfo, class_name: str | None, config_name: str | None
    ) -> object | None:
        """The class or instance a recovered method workflow must be called on."""
        if info.kind == "instance":
            key = f"{class_name}/{config_name}"
            instance = self.instances.get(key)
            if instance is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    workflow_id, f"no configured instance {key!r} is registered"
                )
            return instance
        if info.kind == "class":
            cls = self.classes.get(class_name or "")
            if cls is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    workflow_id, f"no DBOS class {class_name!r} is registered"
                )
            return cls
        return None

    def application_version(self, app_name: str) -> str:
        """A hash of every workflow's source: it changes when workflow code changes."""
        digest = hashlib.md5(usedforsecurity=False)
        digest.update(app_name.encode())
        for name in sorted(self.workflows):
            digest.update(name.encode())
            digest.update(_source_of(self.workflows[name].func).encode())
        return digest.hexdigest()

    def clear(self) -> None:
        """Forget everything registered."""
        self.workflows.clear()
        self.classes.clear()
        self.instances.clear()
        self.queues.clear()
        self.schedules.clear()


def _source_of(func: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return func.__qualname__


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_b is not None
        and a.__qualname__ == b.__qualname__
        and code_a.co_filename == code_b.co_filename
        and code_a.co_firstlineno == code_b.co_firstlineno
    )


default_registry = Registry()
"""The registry the ``DBOS`` decorators write to (decorators run at import, before any runtime)."""


class DBOSConfiguredInstance:
    """Base class for objects whose methods are workflows: ``config_name`` identifies the instance.

    Recovery finds the instance by its class's DBOS name and ``config_name``, so every process
    must create the same instances before launch.
    """

    config_name: str

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        class_name = getattr(type(self), "dbos_class_name", type(self).__qualname__)
        default_registry.add_instance(class_name, config_name, self)
