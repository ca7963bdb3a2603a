"""The admin HTTP API: every route against the app mounted in a Starlette app, the token, and
the server the engine runs (on 127.0.0.1 by default)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from dbos_async import DBOS, DBOSClient, Queue, SetWorkflowID
from dbos_async.admin import admin_app
from tests.conftest import make_config
from tests.waypoints import Waypoints

points = Waypoints()
queue = Queue("admin_api_queue", concurrency=3)


@pytest.fixture(autouse=True)
def _fresh() -> None:
    points.clear()


@DBOS.step()
async def triple(x: int) -> int:
    return 3 * x


@DBOS.workflow()
async def tripled(x: int) -> int:
    await DBOS.set_event_async("progress", "done")
    await DBOS.write_stream_async("out", x)
    return await triple(x)


@DBOS.workflow()
async def waiting() -> None:
    points.passed("waiting")
    await points.gate("never").wait()


@pytest.fixture
async def client(dbos: type[DBOS], database_url: str) -> AsyncIterator[DBOSClient]:
    async with DBOSClient(database_url) as client:
        yield client


def mounted(app: Starlette) -> Starlette:
    return Starlette(routes=[Mount("/dbos", app)])


@pytest.fixture
async def http(client: DBOSClient) -> AsyncIterator[httpx.AsyncClient]:
    app = mounted(admin_app(client=client))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin/dbos") as http:
        yield http


async def test_health_queues_metadata_and_deactivate(http: httpx.AsyncClient) -> None:
    health = await http.get("/dbos-healthz")
    assert (health.status_code, health.text) == (200, "healthy")
    metadata = (await http.get("/dbos-workflow-queues-metadata")).json()
    mine = [q for q in metadata if q["name"] == "admin_api_queue"]
    assert mine == [
        {"name": "admin_api_queue", "concurrency": 3, "workerConcurrency": None, "rateLimit": None}
    ]
    deactivated = await http.get("/deactivate")
    assert (deactivated.status_code, deactivated.text) == (200, "deactivated")
    # Without an engine in the app, recovery cannot run the workflows' code.
    recovery = await http.post("/dbos-workflow-recovery", json=["local"])
    assert recovery.status_code == 503


async def test_workflow_routes_have_dbos_shapes(http: httpx.AsyncClient) -> None:
    with SetWorkflowID("admin-wf-1"):
        assert await (await DBOS.start_workflow_async(tripled, 5)).get_result() == 15
    got = await http.get("/workflows/admin-wf-1")
    assert got.status_code == 200
    body = got.json()
    assert body["WorkflowUUID"] == "admin-wf-1"
    assert body["Status"] == "SUCCESS"
    assert body["Output"] == "15"
    assert all(v is None or isinstance(v, str) for v in body.values())
    assert (await http.get("/workflows/nope")).status_code == 404

    steps = (await http.get("/workflows/admin-wf-1/steps")).json()
    assert [s["function_name"] for s in steps][-1].endswith("triple")
    last = steps[-1]
    assert last["output"] == 15 and last["error"] is None
    assert set(last) >= {
        "function_id",
        "child_workflow_id",
        "started_at_epoch_ms",
        "completed_at_epoch_ms",
    }

    listed = (await http.post("/workflows", json={"workflow_uuids": ["admin-wf-1"]})).json()
    assert [w["WorkflowUUID"] for w in listed] == ["admin-wf-1"]
    by_name = await http.post("/workflows", json={"workflow_name": "nothing", "limit": 5})
    assert by_name.json() == []
    bad = await http.post("/workflows", json={"no_such_filter": 1})
    assert bad.status_code == 400

    detail = (await http.get("/api/workflows/admin-wf-1")).json()
    assert detail["events"] == {"progress": "done"}
    assert detail["streams"] == {"out": [5]}
    assert detail["steps"][-1]["duration_ms"] is not None


async def test_cancel_resume_restart_fork_and_queued(http: httpx.AsyncClient) -> None:
    with SetWorkflowID("admin-wait"):
        handle = await queue.enqueue_async(waiting)
    await points.reached("waiting")
    queued = (await http.post("/queues", json={"queue_name": "admin_api_queue"})).json()
    assert [w["WorkflowUUID"] for w in queued] == ["admin-wait"]
    depths = (await http.get("/api/queues")).json()
    mine = next(q for q in depths if q["name"] == "admin_api_queue")
    assert mine["running"] == 1

    assert (await http.post("/workflows/admin-wait/cancel")).status_code == 204
    assert (await handle.get_status()).status == "CANCELLED"
    assert (await http.post("/workflows/admin-wait/resume")).status_code == 204
    await points.reached("waiting")
    await http.post("/workflows/admin-wait/cancel")

    with SetWorkflowID("admin-wf-2"):
        await (await DBOS.start_workflow_async(tripled, 2)).get_result()
    restarted = (await http.post("/workflows/admin-wf-2/restart")).json()["workflow_id"]
    forked = await http.post(
        "/workflows/admin-wf-2/fork", json={"start_step": 2, "new_workflow_id": "admin-fork"}
    )
    assert forked.json() == {"workflow_id": "admin-fork"}
    for workflow_id in (restarted, "admin-fork"):
        assert await (await DBOS.retrieve_workflow_async(workflow_id)).get_result() == 6


async def test_counts_timeline_and_metrics(http: httpx.AsyncClient) -> None:
    for i in range(3):
        await (await DBOS.start_workflow_async(tripled, i)).get_result()
    counts = (await http.get("/api/counts")).json()
    assert counts["SUCCESS"] == 3
    timeline = (await http.get("/api/timeline?minutes=5&bucket_seconds=60")).json()
    assert sum(b["counts"].get("SUCCESS", 0) for b in timeline["buckets"]) == 3
    page = (await http.get("/api/workflows?status=SUCCESS&limit=2")).json()
    assert len(page["workflows"]) == 2
    metrics = await http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'dbos_workflows{status="SUCCESS"} 3' in text
    assert 'dbos_queue_workflows{queue="admin_api_queue",status="ENQUEUED"} 0' in text
    assert "dbos_step_duration_seconds_count{" in text


async def test_pages_render(http: httpx.AsyncClient) -> None:
    with SetWorkflowID("admin-page"):
        await (await DBOS.start_workflow_async(tripled, 1)).get_result()
    listing = await http.get("/")
    assert listing.status_code == 200 and "admin-page" in listing.text
    assert 'href="/dbos/workflow/admin-page"' in listing.text  # links know the mount point
    detail = await http.get("/workflow/admin-page")
    assert "triple" in detail.text and "progress" in detail.text
    fragment = await http.get("/", headers={"X-Dashboard-Fragment": "1"})
    assert "<html" not in fragment.text and "admin-page" in fragment.text
    assert (await http.get("/queues")).status_code == 200
    assert (await http.get("/queues/admin_api_queue")).status_code == 200
    script = await http.get("/static/dashboard.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert (await http.get("/workflow/unknown")).status_code == 404


async def test_garbage_collect_and_global_timeout(http: httpx.AsyncClient) -> None:
    await (await DBOS.start_workflow_async(tripled, 1)).get_result()
    handle = await DBOS.start_workflow_async(waiting)
    await points.reached("waiting")
    far_future = 2**52
    timeout = await http.post(
        "/dbos-global-timeout", json={"cutoff_epoch_timestamp_ms": far_future}
    )
    assert timeout.status_code == 204
    assert (await handle.get_status()).status == "CANCELLED"
    collected = await http.post("/dbos-garbage-collect", json={"rows_threshold": 1})
    assert collected.status_code == 204
    assert len((await http.post("/workflows", json={})).json()) == 1
    bad = await http.post("/dbos-global-timeout", json={})
    assert bad.status_code == 400


async def test_token_is_required_when_configured(client: DBOSClient) -> None:
    app = mounted(admin_app(client=client, token="s3cret"))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin/dbos") as http:
        for path in ("/dbos-healthz", "/", "/metrics", "/api/counts", "/workflows/x"):
            assert (await http.get(path)).status_code == 401
        assert (await http.post("/workflows", json={})).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get("/dbos-healthz", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert (await http.get("/dbos-healthz", headers=right)).status_code == 200
        # A browser opens a page once with ?token=, which sets a cookie for the rest.
        opened = await http.get("/?token=s3cret")
        assert opened.status_code == 200
        assert "dbos_admin_token=s3cret" in opened.headers["set-cookie"]
        assert "Path=/dbos" in opened.headers["set-cookie"]
        assert (await http.get("/api/counts")).status_code == 200  # the cookie jar sends it


async def test_engine_serves_it_on_localhost(database_url: str) -> None:
    """run_admin_server: the engine serves the app on 127.0.0.1 (a real socket), with the
    token, its own recovery, and live events."""
    DBOS(config=make_config(database_url, run_admin_server=True, admin_port=0, admin_token="t0ken"))
    await DBOS.launch_async()
    try:
        engine = DBOS._engine
        assert engine is not None
        port = engine.admin_port
        assert port is not None
        assert engine._admin.host == "127.0.0.1"
        headers = {"Authorization": "Bearer t0ken"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/dbos-healthz")).status_code == 401
            assert (await http.get("/dbos-healthz", headers=headers)).text == "healthy"
            recovered = await http.post("/dbos-workflow-recovery", json=["local"], headers=headers)
            assert recovered.status_code == 200 and recovered.json() == []
            await (await DBOS.start_workflow_async(tripled, 4)).get_result()
            metrics = (await http.get("/metrics", headers=headers)).text
            assert 'dbos_checkpoint_batch_rows_count{writer="steps"}' in metrics
            async with http.stream("GET", "/api/events", headers=headers) as events:
                lines = events.aiter_lines()
                assert await anext(lines) == "retry: 1000"
                assert await anext(lines) == "event: ready"
                await DBOS.start_workflow_async(tripled, 1)
                while await anext(lines) != "event: change":
                    pass
    finally:
        await DBOS.destroy_async()
