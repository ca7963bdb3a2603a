"""Configuration checks: typos surface, values are validated, the environment fills the gaps."""

from __future__ import annotations

import logging

import pytest

from dbos_async import (
    DBOS,
    DBOSConfigurationError,
    DBOSInvalidArgumentError,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos_async._core._config import resolve_config


def test_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(DBOSConfigurationError) as raised:
        resolve_config({"name": "app", "sys_db_pool_sise": 5})
    assert "sys_db_pool_sise" in str(raised.value)


def test_documented_key_without_effect_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        resolve_config({"name": "app", "enable_otlp": True})
    assert "enable_otlp" in caplog.text


@pytest.mark.parametrize("name", ["ab", "Has Caps", "x" * 31, 7])
def test_bad_name_is_rejected(name: object) -> None:
    with pytest.raises(DBOSConfigurationError):
        resolve_config({"name": name})


@pytest.mark.parametrize("size", [0, -1, "10", True])
def test_bad_pool_size_is_rejected(size: object) -> None:
    with pytest.raises(DBOSConfigurationError):
        resolve_config({"sys_db_pool_size": size})


def test_environment_supplies_url_executor_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS_SYSTEM_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("DBOS__VMID", "vm-7")
    monkeypatch.setenv("DBOS__APPVERSION", "v42")
    config = resolve_config(None)
    assert config.system_database_url == "postgresql://u@h/db"
    assert (config.executor_id, config.application_version) == ("vm-7", "v42")


def test_no_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_SYSTEM_DATABASE_URL", raising=False)
    monkeypatch.delenv("DBOS_DATABASE_URL", raising=False)
    assert resolve_config({"name": "app"}).system_database_url is None


def test_resilience_knobs_have_defaults_and_are_checked() -> None:
    config = resolve_config({"name": "app"})
    assert (config.retry_limit, config.heartbeat_interval, config.adoption_timeout) == (
        300.0,
        5.0,
        30.0,
    )
    config = resolve_config(
        {
            "system_database_retry_limit_sec": 10,
            "executor_heartbeat_interval_sec": 0.5,
            "executor_adoption_timeout_sec": 2,
        }
    )
    assert (config.retry_limit, config.heartbeat_interval, config.adoption_timeout) == (
        10.0,
        0.5,
        2.0,
    )
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(DBOSConfigurationError):
            resolve_config({"system_database_retry_limit_sec": bad})
    with pytest.raises(DBOSConfigurationError, match="at least twice"):
        resolve_config({"executor_heartbeat_interval_sec": 5, "executor_adoption_timeout_sec": 6})


@pytest.mark.parametrize("bad", ["", "   ", None, 5])
def test_bad_workflow_id_is_rejected(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        SetWorkflowID(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_bad_timeout_is_rejected(bad: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        SetWorkflowTimeout(bad)  # type: ignore[arg-type]


def test_operations_before_launch_raise_not_launched() -> None:
    from dbos_async import DBOSNotLaunchedError

    with pytest.raises(DBOSNotLaunchedError):
        DBOS.get_workflow_status("x")
