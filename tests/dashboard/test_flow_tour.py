"""docs/flow.md's tour, drawn on the run page: every block kind, its conditions as written, and each
step where it ran (the picture in the doc comes from here)."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page, expect
from tests.dashboard.conftest import launch, shoot, wait_status
from tests.serverkit import LiveServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_flow_tour_is_drawn_block_by_block(server: LiveServer, page: Page) -> None:
    blueprint = json.loads((EXAMPLES / "flow_tour.json").read_text())
    client = server.client()
    run_id = launch(client, blueprint, base_dir=str(EXAMPLES))["run_id"]
    assert wait_status(client, run_id, "done", "failed")["status"] == "done"

    page.goto(f"{server.base_url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("done")
    fanout, loop = page.locator(".n-fanout"), page.locator(".n-loop")
    expect(fanout.locator(".lanes .lane")).to_have_count(3)
    expect(fanout.locator(".lanes-sum")).to_have_text("3 lanes · 3 passed")
    expect(loop.locator(".count")).to_have_text("4")
    expect(loop.locator(".hd .expr")).to_have_text("while $.total < 12")
    expect(page.locator(".n-branch .hd .expr")).to_have_text("if $.total >= 12")
    expect(page.locator(".n-try .hd .expr")).to_have_text("error → $.error")
    expect(page.locator('.step[data-ref="measure"]')).to_have_attribute("data-state", "passed")
    expect(page.locator('.step[data-ref="count"]')).to_have_attribute("data-state", "passed")
    expect(page.locator('.step[data-ref="check"]')).to_have_attribute("data-state", "failed")
    expect(page.locator(".n.assign").first).to_have_text("$.total := 0")
    shoot(page, "flow-tour")
