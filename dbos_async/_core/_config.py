"""``DBOSConfig``: the configuration keys DBOS documents, checked so typos surface.

Every key of DBOS 3.4.0's ``DBOSConfig`` (and of the older releases the seed documents) is
accepted; one set to a value that has no effect here logs one warning naming it, each time a
config is resolved. A key DBOS does not know raises :class:`DBOSConfigurationError` (DBOS
ignores it). The environment is read when the config is resolved (at ``DBOS(...)``), never at
import.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._errors import DBOSConfigurationError
from ._serialization import BytesSerializer, Serializer, as_bytes_serializer
from ._validation import check_int, check_number

__all__ = ["DBOSConfig", "ResolvedConfig", "resolve_config"]

logger = logging.getLogger("dbos_async")


class DBOSConfig(TypedDict, total=False):
    """Configuration for ``DBOS(config=...)``; every key is optional here."""

    name: str
    application_name: str | None
    system_database_url: str | None
    application_database_url: str | None
    database_url: str | None
    sys_db_pool_size: int | None
    sys_db_polling_concurrency: int | None
    db_engine_kwargs: dict[str, Any] | None
    sys_db_idle_transaction_timeout_sec: float | None
    system_database_engine: Any
    dbos_system_schema: str | None
    use_listen_notify: bool | None
    run_migrations: bool | None
    max_executor_threads: int | None
    notification_listener_polling_interval_sec: float | None
    notification_coalesce_sec: float | None
    scheduler_polling_interval_sec: float | None
    kafka_queue_polling_interval_sec: float | None
    application_version: str | None
    executor_id: str | None
    enable_patching: bool | None
    serializer: Serializer | BytesSerializer | None
    allow_pickle: bool | None
    system_database_retry_limit_sec: float | None
    executor_heartbeat_interval_sec: float | None
    executor_adoption_timeout_sec: float | None
    log_level: str | None
    console_log_level: str | None
    otlp_log_level: str | None
    enable_otlp: bool | None
    otlp_traces_endpoints: list[str] | None
    otlp_logs_endpoints: list[str] | None
    otlp_attributes: dict[str, str] | None
    otel_attribute_format: str | None
    run_admin_server: bool | None
    admin_port: int | None
    admin_host: str | None
    admin_token: str | None
    conductor_key: str | None
    conductor_url: str | None
    conductor_executor_metadata: dict[str, Any] | None
    conductor_metadata_only_mode: bool | None
    transact_enterprise_key: str | None
    auto_upgrade: bool | None
    auto_upgrade_interval_sec: float | None
    auto_upgrade_grace_sec: float | None
    sharding: bool | None
    observability_query_timeout_sec: float | None


# Keys DBOS documents that this engine does not act on (yet): accepted with a warning.
_WITHOUT_EFFECT = frozenset(
    {
        "sys_db_polling_concurrency",
        "system_database_engine",
        "use_listen_notify",
        "run_migrations",
        "notification_listener_polling_interval_sec",
        "notification_coalesce_sec",
        "scheduler_polling_interval_sec",
        "kafka_queue_polling_interval_sec",
        "console_log_level",
        "otlp_log_level",
        "enable_otlp",
        "otlp_traces_endpoints",
        "otlp_logs_endpoints",
        "otlp_attributes",
        "otel_attribute_format",
        "conductor_key",
        "conductor_url",
        "conductor_executor_metadata",
        "conductor_metadata_only_mode",
        "transact_enterprise_key",
        "auto_upgrade",
        "auto_upgrade_interval_sec",
        "auto_upgrade_grace_sec",
        "sharding",
        "sys_db_idle_transaction_timeout_sec",
        "observability_query_timeout_sec",
    }
)
_KNOWN = frozenset(DBOSConfig.__annotations__)
# DBOS 3.4.0's rule for application names (it also lets a trailing newline through; we do not).
_NAME = re.compile(r"[a-z0-9_-]{3,256}")
_APPLICATION_NAME_MAX = 256  # as long as a name may be: DBOS records the name there
DEFAULT_APP_NAME = "dbos-async-app"
PATCHING_VERSION = "PATCHING_ENABLED"
"""The application version of every deployment when ``enable_patching`` is set."""


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """The configuration after defaults and the environment are applied."""

    name: str
    system_database_url: str | None  # None: start the embedded Postgres
    schema: str
    pool_size: int
    max_executor_threads: int
    executor_id: str
    application_version: str | None  # None: hash of the registered workflows
    serializer: BytesSerializer | None  # a DBOS 3.x-style serializer comes adapted
    allow_pickle: bool
    log_level: str
    raw: Mapping[str, Any]
    retry_limit: float = 300.0
    """Seconds a call outside a workflow (and launch) waits for an unreachable system database."""
    heartbeat_interval: float = 5.0
    """Seconds between this executor's heartbeats."""
    adoption_timeout: float = 30.0
    """Seconds without a heartbeat after which another executor adopts an executor's work."""
    application_name: str | None = None
    """The application this process works for in a system database several share (None: all)."""
    application_database_url: str | None = None
    """The database ``@DBOS.transaction`` writes to (None: transactions are unavailable)."""
    db_engine_kwargs: dict[str, Any] | None = None
    """SQLAlchemy engine arguments for the application database."""
    run_admin_server: bool = False
    """Whether the engine serves the admin API and dashboard (``dbos_async.admin``)."""
    admin_host: str = "127.0.0.1"
    """The address the admin server binds (only this machine by default)."""
    admin_port: int = 3001
    """The port the admin server listens on (0: any free one)."""
    admin_token: str | None = None
    """A bearer token every admin request must carry (None: no token is asked for)."""


def _positive_int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key)
    return default if value is None else check_int(key, value, error=DBOSConfigurationError)


def _positive_seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    if value is None:
        return default
    return check_number(key, value, strict=True, error=DBOSConfigurationError)


def _application_version(config: Mapping[str, Any]) -> str | None:
    """The configured version, else :data:`PATCHING_VERSION` with ``enable_patching`` (so that
    every deployment is one version and patches decide what old executions run), else the
    environment's (None: a hash of the registered workflows)."""
    if config.get("application_version"):
        return str(config["application_version"])
    if config.get("enable_patching"):
        logger.warning(
            "enable_patching is deprecated (as in DBOS): DBOS.patch and DBOS.deprecate_patch "
            "work without it. It pins the application version to %r; to keep every "
            "deployment on one version, set application_version instead",
            PATCHING_VERSION,
        )
        return PATCHING_VERSION
    return os.environ.get("DBOS__APPVERSION") or None


def resolve_config(config: Mapping[str, Any] | None) -> ResolvedConfig:
    """Validate ``config`` and apply defaults and environment variables."""
    config = dict(config or {})
    unknown = sorted(set(config) - _KNOWN)
    if unknown:
        raise DBOSConfigurationError(
            f"Unknown configuration key(s) {', '.join(map(repr, unknown))}; "
            f"known keys are: {', '.join(sorted(_KNOWN))}"
        )
    for key in sorted(set(config) & _WITHOUT_EFFECT):
        if config[key] is not None:
            logger.warning("Configuration key %r has no effect in dbos_async yet", key)
    name = config.get("name") or DEFAULT_APP_NAME
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DBOSConfigurationError(
            f"name must be 3 to 256 characters of lowercase letters, digits, '-' or '_', "
            f"got {name!r}"
        )
    application_name = config.get("application_name")
    if application_name is not None and (
        not isinstance(application_name, str)
        or not application_name.strip()
        or len(application_name) > _APPLICATION_NAME_MAX
    ):
        raise DBOSConfigurationError(
            f"application_name must be a non-empty string of at most {_APPLICATION_NAME_MAX} "
            f"characters, got {application_name!r}"
        )
    url = (
        config.get("system_database_url")
        or os.environ.get("DBOS_SYSTEM_DATABASE_URL")
        or os.environ.get("DBOS_DATABASE_URL")
        or None
    )
    if url is not None and not isinstance(url, str):
        raise DBOSConfigurationError(f"system_database_url must be a string, got {url!r}")
    serializer = config.get("serializer")
    if serializer is not None:
        serializer = as_bytes_serializer(serializer)
    heartbeat_interval = _positive_seconds(config, "executor_heartbeat_interval_sec", 5.0)
    adoption_timeout = _positive_seconds(config, "executor_adoption_timeout_sec", 30.0)
    if adoption_timeout < 2 * heartbeat_interval:
        raise DBOSConfigurationError(
            f"executor_adoption_timeout_sec ({adoption_timeout}) must be at least twice "
            f"executor_heartbeat_interval_sec ({heartbeat_interval}), or live executors would "
            "lose their workflows"
        )
    log_level = str(config.get("log_level") or "INFO").upper()
    if log_level not in logging.getLevelNamesMapping():
        raise DBOSConfigurationError(f"log_level {log_level!r} is not a logging level")
    app_url = config.get("application_database_url") or config.get("database_url") or None
    if app_url is not None and not isinstance(app_url, str):
        raise DBOSConfigurationError(f"application_database_url must be a string, got {app_url!r}")
    engine_kwargs = config.get("db_engine_kwargs")
    if engine_kwargs is not None and not isinstance(engine_kwargs, dict):
        raise DBOSConfigurationError(f"db_engine_kwargs must be a dict, got {engine_kwargs!r}")
    return ResolvedConfig(
        name=name,
        system_database_url=url,
        schema=config.get("dbos_system_schema") or "dbos",
        pool_size=_positive_int(config, "sys_db_pool_size", 20),
        max_executor_threads=_positive_int(config, "max_executor_threads", 64),
        executor_id=config.get("executor_id") or os.environ.get("DBOS__VMID") or "local",
        application_version=_application_version(config),
        serializer=serializer,
        allow_pickle=bool(config.get("allow_pickle")),
        log_level=log_level,
        raw=config,
        retry_limit=_positive_seconds(config, "system_database_retry_limit_sec", 300.0),
        heartbeat_interval=heartbeat_interval,
        adoption_timeout=adoption_timeout,
        application_name=application_name,
        application_database_url=app_url,
        db_engine_kwargs=engine_kwargs,
        run_admin_server=bool(config.get("run_admin_server")),
        admin_host=_optional_str(config, "admin_host") or "127.0.0.1",
        admin_port=check_int(
            "admin_port",
            3001 if config.get("admin_port") is None else config["admin_port"],
            minimum=0,  # 0: any free port
            maximum=65535,
            error=DBOSConfigurationError,
        ),
        admin_token=_optional_str(config, "admin_token"),
    )


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise DBOSConfigurationError(f"{key} must be a string, got {value!r}")
    return value or None
