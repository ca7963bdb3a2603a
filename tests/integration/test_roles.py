"""Role-based access: ``required_roles``, ``default_required_roles`` and the assumed role."""

from __future__ import annotations

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSContextSetAuth,
    DBOSInvalidArgumentError,
    DBOSNotAuthorizedError,
    Queue,
    SetWorkflowID,
)
from tests.conftest import make_config

ran: list[str] = []


@DBOS.required_roles(["admin", "ops"])
@DBOS.workflow()
async def admin_only() -> str | None:
    ran.append("admin_only")
    return DBOS.assumed_role


@DBOS.workflow()
@DBOS.required_roles(["admin"])
async def admin_only_inner() -> str | None:
    ran.append("admin_only_inner")
    return DBOS.assumed_role


@DBOS.required_roles(["auditor"])
@DBOS.step()
async def audited_step() -> str:
    return "audited"


@DBOS.workflow()
async def calls_audited_step() -> str:
    return await audited_step()


@DBOS.dbos_class()
@DBOS.default_required_roles(["user"])
class Account:
    @staticmethod
    @DBOS.workflow()
    async def balance() -> str | None:
        return DBOS.assumed_role

    @staticmethod
    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    async def close() -> str | None:
        return DBOS.assumed_role


@DBOS.workflow()
async def open_to_all() -> str:
    return "open"


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


async def _count_workflows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM dbos.workflow_status"))
    finally:
        await conn.close()


async def test_a_workflow_without_a_required_role_is_refused_before_any_row(
    dbos: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSNotAuthorizedError, match="without authentication"):
        await admin_only()
    with DBOSContextSetAuth("bob", ["user"]), pytest.raises(DBOSNotAuthorizedError) as denied:
        await admin_only()
    assert denied.value.status_code == 403
    assert ran == []
    assert await _count_workflows(database_url) == 0


async def test_the_first_listed_role_held_is_assumed_and_recorded(dbos: type[DBOS]) -> None:
    with DBOSContextSetAuth("alice", ["ops", "admin"]), SetWorkflowID("assumed"):
        assert await admin_only() == "admin"  # the function's order, not the user's
    status = await DBOS.get_workflow_status_async("assumed")
    assert status is not None
    assert (status.authenticated_user, status.assumed_role) == ("alice", "admin")
    assert status.authenticated_roles == ["ops", "admin"]


async def test_required_roles_below_the_workflow_decorator_also_applies(
    dbos: type[DBOS],
) -> None:
    with pytest.raises(DBOSNotAuthorizedError):
        await admin_only_inner()
    with DBOSContextSetAuth("alice", ["admin"]):
        assert await admin_only_inner() == "admin"
    assert ran == ["admin_only_inner"]


async def test_start_and_enqueue_are_checked_at_the_call(dbos: type[DBOS]) -> None:
    queue = Queue("roles-queue")
    with pytest.raises(DBOSNotAuthorizedError):
        await DBOS.start_workflow_async(admin_only)
    with pytest.raises(DBOSNotAuthorizedError):
        await queue.enqueue_async(admin_only)
    with DBOSContextSetAuth("alice", ["ops"]):
        handle = await queue.enqueue_async(admin_only)
    assert await handle.get_result() == "ops"


async def test_a_step_checks_the_workflows_user(dbos: type[DBOS]) -> None:
    with (
        DBOSContextSetAuth("carol", ["user"]),
        SetWorkflowID("step-denied"),
        pytest.raises(DBOSNotAuthorizedError),
    ):
        await calls_audited_step()
    status = await DBOS.get_workflow_status_async("step-denied")
    assert status is not None and status.status == "ERROR"
    with DBOSContextSetAuth("dave", ["auditor"]):
        assert await calls_audited_step() == "audited"
        assert await audited_step() == "audited"  # outside a workflow: still checked
    with pytest.raises(DBOSNotAuthorizedError):
        await audited_step()


async def test_class_default_roles_and_a_method_override(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNotAuthorizedError):
        await Account.balance()
    with DBOSContextSetAuth("erin", ["user"]):
        assert await Account.balance() == "user"
        with pytest.raises(DBOSNotAuthorizedError):
            await Account.close()  # its own roles replace the class default
    with DBOSContextSetAuth("frank", ["admin"]):
        assert await Account.close() == "admin"
    assert await open_to_all() == "open"


@DBOS.workflow()
@DBOS.required_roles(["admin"])
async def waits_for_approval() -> str:
    message = await DBOS.recv_async("approval", timeout_seconds=30)
    return f"approved: {message}"


async def test_recovery_denies_a_workflow_whose_stored_user_lost_the_role(
    dbos: type[DBOS], database_url: str
) -> None:
    with DBOSContextSetAuth("alice", ["admin"]), SetWorkflowID("revoked"):
        await DBOS.start_workflow_async(waits_for_approval)
    await DBOS.destroy_async()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE dbos.workflow_status SET authenticated_roles = ARRAY['user']"
            " WHERE workflow_uuid = 'revoked'"
        )
    finally:
        await conn.close()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    with pytest.raises(DBOSNotAuthorizedError):
        await DBOS.get_result_async("revoked")
    status = await DBOS.get_workflow_status_async("revoked")
    assert status is not None and status.status == "ERROR"


@pytest.mark.parametrize("roles", ["admin", [""], [1], ["ok", None]])
def test_bad_role_lists_are_rejected(roles: object) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.required_roles(roles)  # type: ignore[arg-type]
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.default_required_roles(roles)  # type: ignore[arg-type]
