"""Configuration checks: typos surface, values are validated, the environment fills the gaps."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSConfig,
    DBOSConfigurationError,
    DBOSInvalidArgumentError,
    Serializer,
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


@pytest.mark.parametrize("name", ["ab", "Has Caps", "x" * 257, 7, "abc\n", "ab.c", "a b c"])
def test_bad_name_is_rejected(name: object) -> None:
    with pytest.raises(DBOSConfigurationError, match="3 to 256"):
        resolve_config({"name": name})


@pytest.mark.parametrize("name", ["abc", "x" * 256, "my_app-2", "0-9"])
def test_names_dbos_accepts_are_accepted(name: str) -> None:
    assert resolve_config({"name": name}).name == name


# dbos 3.4.0's ``DBOSConfig.__annotations__``, in its order.
DBOS_3_4_KEYS = [
    "name",
    "system_database_url",
    "sys_db_pool_size",
    "sys_db_polling_concurrency",
    "db_engine_kwargs",
    "sys_db_idle_transaction_timeout_sec",
    "log_level",
    "otlp_log_level",
    "console_log_level",
    "otlp_traces_endpoints",
    "otlp_logs_endpoints",
    "otlp_attributes",
    "application_version",
    "executor_id",
    "dbos_system_schema",
    "enable_otlp",
    "system_database_engine",
    "conductor_key",
    "conductor_url",
    "conductor_executor_metadata",
    "conductor_metadata_only_mode",
    "transact_enterprise_key",
    "auto_upgrade",
    "auto_upgrade_interval_sec",
    "auto_upgrade_grace_sec",
    "serializer",
    "enable_patching",
    "use_listen_notify",
    "sharding",
    "run_migrations",
    "max_executor_threads",
    "notification_listener_polling_interval_sec",
    "notification_coalesce_sec",
    "observability_query_timeout_sec",
    "scheduler_polling_interval_sec",
    "kafka_queue_polling_interval_sec",
    "otel_attribute_format",
]


def test_every_dbos_3_4_key_is_declared() -> None:
    assert set(DBOS_3_4_KEYS) <= set(DBOSConfig.__annotations__)


@pytest.mark.parametrize("key", sorted(set(DBOS_3_4_KEYS) - {"name", "log_level"}))
def test_every_dbos_3_4_key_is_accepted_unset(key: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        resolve_config({"name": "app", key: None})
    assert caplog.records == []  # an unset key (None) warns about nothing


def test_each_key_without_effect_warns_once_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    keys = ["sharding", "auto_upgrade", "otel_attribute_format", "conductor_url"]
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        resolve_config({"name": "app", **dict.fromkeys(keys, "set")})
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == len(keys)
    for key in keys:
        assert sum(f"'{key}'" in m and "no effect" in m for m in warned) == 1


def test_application_name_is_exposed() -> None:
    assert resolve_config({"name": "app"}).application_name is None
    config = resolve_config({"name": "app", "application_name": "Billing Service"})
    assert config.application_name == "Billing Service"
    assert resolve_config({"application_name": "x" * 256}).application_name == "x" * 256


@pytest.mark.parametrize("bad", ["", "   ", 5, "x" * 257])
def test_bad_application_name_is_rejected(bad: object) -> None:
    with pytest.raises(DBOSConfigurationError, match="application_name"):
        resolve_config({"application_name": bad})


class _TextSerializer(Serializer):
    def serialize(self, data: Any) -> str:
        return str(data)

    def deserialize(self, serialized_data: str) -> Any:
        return serialized_data

    def name(self) -> str:
        return "as_text"


def test_dbos3_serializer_is_accepted_and_adapted() -> None:
    serializer = resolve_config({"serializer": _TextSerializer()}).serializer
    assert serializer is not None and serializer.name == "as_text"
    assert serializer.dumps(12) == b"12"


@pytest.mark.parametrize("bad", [object(), "json", {"name": "x"}])
def test_bad_serializer_is_a_configuration_error(bad: object) -> None:
    with pytest.raises(DBOSConfigurationError, match="serializer"):
        resolve_config({"serializer": bad})


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
