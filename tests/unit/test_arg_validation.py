"""``validate_args`` without a database: the decorator's checks and the pydantic validator."""

from __future__ import annotations

import sys
from typing import Any

import pydantic
import pytest

from dbos_async import (
    DBOS,
    DBOSConfiguredInstance,
    DBOSInvalidArgumentError,
    make_pydantic_args_validator,
    pydantic_args_validator,
)
from dbos_async._core._registry import default_registry
from dbos_async._features._decorators import workflow_info


class Point(pydantic.BaseModel):
    x: int
    y: int


class Opaque:
    """A class pydantic has no schema for."""


def signature_zoo(
    a: int, b: Any, /, c: str = "c", *rest: float, d: bool, point: Point | None = None, **more: int
) -> None: ...


zoo = make_pydantic_args_validator(signature_zoo)


def test_arguments_are_converted_by_their_parameters_hints() -> None:
    args, kwargs = zoo(("1", "anything", "s", "2.5", 3), {"d": "yes", "extra": "7"})
    assert args == (1, "anything", "s", 2.5, 3.0)
    assert kwargs == {"d": True, "extra": 7}
    _, kwargs = zoo((1, 2), {"d": False, "point": {"x": "1", "y": 2}})
    assert kwargs["point"] == Point(x=1, y=2)


def test_every_problem_is_reported_in_one_value_error() -> None:
    with pytest.raises(ValueError) as raised:
        zoo(("one",), {"c": 5, "more": "many"})
    message = str(raised.value)
    assert "'a' (position 0)" in message
    assert "'c'" in message and "'more'" in message
    assert "missing required argument 'b'" in message
    assert "missing required argument 'd'" in message
    assert isinstance(raised.value, ValueError)
    assert not isinstance(raised.value, pydantic.ValidationError)


def test_a_positional_only_parameter_named_by_keyword_goes_to_kwargs() -> None:
    with pytest.raises(ValueError, match="missing required argument 'a'"):
        zoo((), {"a": 1, "b": 2, "d": True})


def test_what_binds_to_no_parameter_is_left_for_the_call_to_reject() -> None:
    def plain(a: int) -> None: ...

    validator = make_pydantic_args_validator(plain)
    assert validator(("1", "extra"), {"unknown": "x"}) == ((1, "extra"), {"unknown": "x"})


def test_unannotated_parameters_and_unknown_classes() -> None:
    def loose(a, b: Opaque) -> None:  # type: ignore[no-untyped-def]
        ...

    validator = make_pydantic_args_validator(loose)
    thing = Opaque()
    assert validator(("raw", thing), {}) == (("raw", thing), {})
    with pytest.raises(ValueError, match="'b'"):
        validator(("raw", "not an Opaque"), {})


def test_unresolvable_hints_are_a_clear_error_on_first_use() -> None:
    def broken(a: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    validator = make_pydantic_args_validator(broken)  # hints are resolved lazily
    with pytest.raises(TypeError, match="NoSuchType"):
        validator((1,), {})


@DBOS.dbos_class()
class ValidatedTally(DBOSConfiguredInstance):
    def __init__(self) -> None:
        super().__init__(config_name="unit")

    @DBOS.workflow(validate_args=pydantic_args_validator)
    async def add(self, amount: int) -> int:
        return amount

    @classmethod
    @DBOS.workflow(validate_args=pydantic_args_validator)
    async def make(cls, amount: int) -> int:
        return amount

    @staticmethod
    @DBOS.workflow(validate_args=pydantic_args_validator)
    async def pure(amount: int) -> int:
        return amount


def test_methods_are_validated_without_self_or_cls() -> None:
    for method in (ValidatedTally.add, ValidatedTally.make, ValidatedTally.pure):
        validator = workflow_info(method).validate_args
        assert validator is not None
        assert validator(("5",), {}) == ((5,), {})
    # A validator made by hand finds out the same from the registration.
    assert make_pydantic_args_validator(ValidatedTally.add)(("6",), {}) == ((6,), {})
    assert make_pydantic_args_validator(ValidatedTally.make)(("7",), {}) == ((7,), {})


def test_the_marker_is_not_a_validator_itself() -> None:
    with pytest.raises(NotImplementedError, match="make_pydantic_args_validator"):
        pydantic_args_validator((1,), {})


@pytest.mark.parametrize("bad", [5, "pydantic", object()])
def test_a_validate_args_that_is_not_callable_is_refused_at_decoration(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="validate_args"):
        DBOS.workflow(name="never-registered", validate_args=bad)  # type: ignore[arg-type]
    assert "never-registered" not in default_registry.workflows


def test_an_async_validate_args_is_refused_at_decoration() -> None:
    async def checks(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, kwargs

    with pytest.raises(DBOSInvalidArgumentError, match="not async"):
        DBOS.workflow(name="never-registered", validate_args=checks)  # type: ignore[arg-type]


def test_without_pydantic_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)
    with pytest.raises(ImportError, match=r"dbos_async\[pydantic\]"):
        make_pydantic_args_validator(signature_zoo)
    with pytest.raises(ImportError, match=r"dbos_async\[pydantic\]"):
        DBOS.workflow(name="never-registered", validate_args=pydantic_args_validator)
    assert "never-registered" not in default_registry.workflows
