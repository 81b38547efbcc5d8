"""Sign-in with the admin token and CSRF protection of every mutating dashboard request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from tests.dashboard.conftest import echo_step, launch, shoot, step, wait_status
from tests.serverkit import LiveServer, start_server

TOKEN = "admin-token-for-tests"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path, admin_token=TOKEN)
    try:
        yield live
    finally:
        live.stop()


def test_the_dashboard_asks_for_the_admin_token_and_keeps_it_in_a_strict_cookie(
    guarded: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(guarded.base_url + "/blueprints")
    page.wait_for_url("**/ui/login?next=%2Fblueprints")
    page.locator("#token").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("p.error")).to_contain_text("not the admin token")
    shoot(page, "login")

    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/blueprints")
    cookie = next(c for c in context.cookies() if c["name"] == "mse_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    page.goto(guarded.base_url + "/")
    page.wait_for_url("**/ui/login?next=%2F")
    context.close()


def test_mutating_requests_need_the_csrf_token(guarded: LiveServer, browser: Browser) -> None:
    api = guarded.client(token=TOKEN)
    blueprint = {"id": "one", "flow": step("a", "$.a"), "agents": [echo_step("a", '"A"')]}
    run_id = launch(api, blueprint)["run_id"]
    wait_status(api, run_id, "done")

    with httpx.Client(base_url=guarded.base_url, cookies={"mse_admin": TOKEN}) as reader:
        page = reader.get(f"/runs/{run_id}")
        assert page.status_code == 200
        token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    with httpx.Client(base_url=guarded.base_url, cookies={"mse_admin": TOKEN, "mse_csrf": "x" * 43}) as forger:
        response = forger.post(f"/ui/runs/{run_id}/rerun-from", data={"from_step": "a"})
        assert response.status_code == 403
        # A token only works with the seed cookie it was made for.
        response = forger.post(f"/ui/runs/{run_id}/rerun-from", data={"from_step": "a", "csrf": token})
        assert response.status_code == 403
        response = forger.post(f"/ui/runs/{run_id}/cancel", headers={"x-csrf-token": token})
        assert response.status_code == 403
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "done"

    context = browser.new_context()
    page = context.new_page()
    page.goto(guarded.base_url + "/ui/login")
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{guarded.base_url}/runs/{run_id}")
    page.locator("#rerun-step").select_option("a")
    page.locator("#btn-rerun").click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator("p.error")).to_have_count(0)
    record = wait_status(api, run_id, "done")
    assert record["status"] == "done"
    context.close()
