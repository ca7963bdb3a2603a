"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
a finished workflow and its steps, a running one cancelled through its button, and a new
workflow appearing live, without reloading. Screenshots stay under the test's tmp dir."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dbos_async import DBOS, DBOSClient, SetWorkflowID
from dbos_async.admin import AdminServer, admin_app
from tests.waypoints import Waypoints

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (apt-get install -y chromium)"
)

points = Waypoints()
WAIT_MS = 10_000  # every wait in the browser is bounded


@pytest.fixture(autouse=True)
def _fresh() -> None:
    points.clear()


@DBOS.step()
async def fetch_order(order: int) -> dict[str, int]:
    return {"order": order, "items": 3}


@DBOS.step()
async def charge(order: int) -> str:
    return f"charged-{order}"


@DBOS.workflow()
async def checkout(order: int) -> str:
    await fetch_order(order)
    await DBOS.set_event_async("stage", "charged")
    return await charge(order)


@DBOS.workflow()
async def stuck() -> None:
    points.passed("stuck")
    await points.gate("never").wait()


@pytest.fixture
async def dashboard(dbos: type[DBOS], database_url: str) -> AsyncIterator[str]:
    """The dashboard served from this test process (uvicorn on a free port)."""
    async with DBOSClient(database_url) as client:
        server = AdminServer(admin_app(client=client), "127.0.0.1", 0)
        await server.start()
        try:
            yield f"http://127.0.0.1:{server.port}"
        finally:
            await server.stop()


async def test_dashboard_in_a_browser(dashboard: str, tmp_path: Path) -> None:
    with SetWorkflowID("order-1001"):
        assert await (await DBOS.start_workflow_async(checkout, 1001)).get_result() == (
            "charged-1001"
        )
    with SetWorkflowID("stuck-1"):
        running = await DBOS.start_workflow_async(stuck)
    await points.reached("stuck")

    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(WAIT_MS)
            page.on("dialog", lambda dialog: dialog.accept())

            # A finished workflow in the list, then its page with its steps.
            await page.goto(dashboard + "/")
            await page.locator('tr[data-workflow-id="order-1001"] a').click()
            await page.wait_for_selector('h1[data-status="SUCCESS"]')
            steps = page.locator("tr.step")
            assert await steps.count() >= 2
            assert "charge" in await steps.last.inner_text()
            assert "charged-1001" in await page.locator("main").inner_text()
            await page.screenshot(path=tmp_path / "workflow.png", full_page=True)

            # Cancel the running one through its button (confirming the dialog).
            await page.goto(f"{dashboard}/workflow/stuck-1")
            await page.locator('button[data-action="cancel"]').click()
            await page.wait_for_selector('h1[data-status="CANCELLED"]')
            status = await running.get_status()
            assert status is not None and status.status == "CANCELLED"
            await page.screenshot(path=tmp_path / "cancelled.png", full_page=True)

            # A new workflow appears, finished, without the page reloading.
            await page.goto(dashboard + "/")
            await page.wait_for_selector("#live.on")
            await page.evaluate("window.notReloaded = true")
            with SetWorkflowID("order-1002"):
                await (await DBOS.start_workflow_async(checkout, 1002)).get_result()
            await page.wait_for_selector(
                'tr[data-workflow-id="order-1002"] .status-SUCCESS', timeout=WAIT_MS
            )
            assert await page.evaluate("window.notReloaded === true")
            await page.screenshot(path=tmp_path / "dashboard.png", full_page=True)
        finally:
            await browser.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 0
