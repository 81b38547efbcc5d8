"""The Blueprints pages: list, history, source, the diff between versions, and launching with an init ctx."""

from __future__ import annotations

import copy

from playwright.sync_api import Page, expect
from tests.dashboard.conftest import echo_step, register, seq, shoot, step, wait_status
from tests.serverkit import LiveServer

REVIEW = {
    "id": "review",
    "metadata": {"description": "draft, then review"},
    "flow": seq(step("draft", "$.draft", "$.topic"), step("critic", "$.review", "$.draft")),
    "agents": [echo_step("draft", '{"text": "a draft"}'), echo_step("critic", '"PASS"')],
}


def test_the_blueprint_diff_shows_a_changed_agent(server: LiveServer, page: Page) -> None:
    client = server.client()
    register(client, REVIEW)
    changed = copy.deepcopy(REVIEW)
    changed["agents"][1] = echo_step("critic", '"REVISE"')
    register(client, changed)

    page.goto(server.base_url + "/blueprints")
    expect(page.locator("main table")).to_contain_text("review")
    expect(page.locator("main table")).to_contain_text("draft, then review")
    shoot(page, "blueprints")

    page.get_by_role("link", name="review", exact=True).click()
    expect(page.locator("#diff-summary")).to_contain_text("agent changed: critic")
    expect(page.locator("#diff-summary")).not_to_contain_text("draft")
    expect(page.locator("#diff .d-add")).to_contain_text("REVISE")
    expect(page.locator("#diff .d-del")).to_contain_text("PASS")
    expect(page.locator("pre.source")).to_contain_text("REVISE")
    page.evaluate("window.scrollTo(0, document.getElementById('diff-h').offsetTop - 70)")
    shoot(page, "blueprint")

    page.locator("#diff-a").select_option(index=1)
    page.locator("#diff-b").select_option(index=1)
    page.locator("#diff-btn").click()
    expect(page.locator("#diff-summary")).to_contain_text("identical")


def test_launching_from_the_blueprint_page_uses_the_init_ctx_form(server: LiveServer, page: Page) -> None:
    register(server.client(), REVIEW)
    page.goto(server.base_url + "/blueprints/review")
    page.locator("#goal").fill("write about durable agents")
    page.locator("#init_ctx").fill('{"topic": "durable agents"}')
    page.locator("#launch-btn").click()
    page.wait_for_url("**/runs/R-*")
    run_id = page.url.rsplit("/", 1)[-1]
    wait_status(server.client(), run_id, "done")
    expect(page.locator("#run-status")).to_have_text("done")
    expect(page.locator("#result")).to_contain_text("durable agents")
    expect(page.locator(".facts")).to_contain_text("write about durable agents")


def test_a_bad_init_ctx_is_reported_on_the_page(server: LiveServer, page: Page) -> None:
    register(server.client(), REVIEW)
    page.goto(server.base_url + "/blueprints/review")
    page.locator("#init_ctx").fill("{not json")
    page.locator("#launch-btn").click()
    expect(page.locator("p.error")).to_contain_text("init ctx is not JSON")
