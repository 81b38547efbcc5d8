"""The runs list and the run page, driven in Chromium against a real server."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect
from tests.dashboard.conftest import Gate, echo_step, gated_step, launch, seq, shoot, step, wait_status
from tests.serverkit import LiveServer

PASSED_GREEN = "rgb(31, 157, 85)"
RUNNING_BLUE = "rgb(47, 111, 222)"


def border_colour(page: Page, selector: str) -> str:
    colour: str = page.eval_on_selector(selector, "el => getComputedStyle(el).borderLeftColor")
    return colour


def test_a_run_launched_over_http_appears_live_and_its_steps_change_colour(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    gate_a, gate_b = Gate(tmp_path / "a"), Gate(tmp_path / "b")
    blueprint = {
        "id": "two-gates",
        "flow": seq(step("fetch", "$.fetched"), step("write", "$.written")),
        "agents": [gated_step("fetch", gate_a, '{"rows": 3}'), gated_step("write", gate_b, '"ok"')],
    }
    client = server.client()
    page.goto(server.base_url + "/")
    expect(page.locator("#runs-empty")).to_be_visible()

    run_id = launch(client, blueprint, goal="copy three rows")["run_id"]
    row = page.locator(f'tr[data-run="{run_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("running")
    expect(row).to_contain_text("copy three rows")

    row.locator("a.mono").click()
    page.wait_for_url(f"**/runs/{run_id}")
    fetch, write = '.step[data-ref="fetch"]', '.step[data-ref="write"]'
    expect(page.locator(fetch)).to_have_attribute("data-state", "running")
    expect(page.locator(write)).to_have_attribute("data-state", "pending")
    assert border_colour(page, fetch) == RUNNING_BLUE

    gate_a.release()
    expect(page.locator(fetch)).to_have_attribute("data-state", "passed")
    expect(page.locator(write)).to_have_attribute("data-state", "running")
    assert border_colour(page, fetch) == PASSED_GREEN
    shoot(page, "run-live")

    gate_b.release()
    expect(page.locator(write)).to_have_attribute("data-state", "passed")
    expect(page.locator("#run-status")).to_have_text("done")
    assert border_colour(page, write) == PASSED_GREEN

    page.locator(fetch).click()
    expect(page.locator("#detail-body")).to_contain_text("rows")
    expect(page.locator("#detail-body")).to_contain_text("passed")
    shoot(page, "run")

    page.goto(server.base_url + "/")
    expect(page.locator(f'tr[data-run="{run_id}"] .badge')).to_have_text("done")
    shoot(page, "runs")


def test_cancel_from_the_page_kills_the_running_child(server: LiveServer, page: Page, tmp_path: Path) -> None:
    pid_pipe = tmp_path / "pid"
    os.mkfifo(pid_pipe)
    blueprint = {
        "id": "long-child",
        "flow": step("crunch", "$.out"),
        "agents": [
            {
                "name": "crunch",
                "kind": "subprocess",
                "spec": {"program": "sh", "args": ["-c", f"echo $$ > {pid_pipe}; exec sleep 600"]},
            }
        ],
    }
    run_id = launch(server.client(), blueprint)["run_id"]
    pid = int(pid_pipe.read_text().strip())
    os.kill(pid, 0)

    page.goto(f"{server.base_url}/runs/{run_id}")
    expect(page.locator('.step[data-ref="crunch"]')).to_have_attribute("data-state", "running")
    page.locator("#btn-cancel").click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#trace-body")).to_contain_text("core.run_finished")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"child {pid} still runs after the run was cancelled")
    expect(page.locator("#btn-cancel")).to_be_disabled()


def test_rerun_from_a_step_on_the_page(server: LiveServer, page: Page) -> None:
    blueprint = {
        "id": "abc",
        "flow": seq(step("a", "$.a"), step("b", "$.b"), step("c", "$.c")),
        "agents": [echo_step("a", '"A"'), echo_step("b", '"B"'), echo_step("c", '"C"')],
    }
    client = server.client()
    run_id = launch(client, blueprint)["run_id"]
    wait_status(client, run_id, "done")

    page.goto(f"{server.base_url}/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("done")
    page.locator('.step[data-ref="b"]').click()
    page.locator("#detail-rerun").click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator('.step[data-ref="c"]')).to_have_attribute("data-count", "2")
    expect(page.locator("#run-status")).to_have_text("done")
    expect(page.locator('.step[data-ref="a"]')).to_have_attribute("data-count", "1")

    steps = client.get(f"/v1/runs/{run_id}/steps").json()["steps"]
    refs = [s["step_ref"] for s in steps]
    assert refs.count("a") == 1 and refs.count("b") == 2 and refs.count("c") == 2, refs


def test_the_run_page_is_usable_by_keyboard_at_phone_width_and_in_dark(server: LiveServer, page: Page) -> None:
    blueprint = {
        "id": "fan",
        "flow": seq(
            {
                "kind": "fanout",
                "items": {"op": "path", "at": "$.files"},
                "bind": {"op": "path", "at": "$.file"},
                "join": "all",
                "out": {"op": "path", "at": "$.reviews"},
                "body": step("review", "$.review", "$.file"),
            },
            step("summarize", "$.summary", "$.reviews"),
        ),
        "agents": [echo_step("review", '{"verdict": "PASS"}'), echo_step("summarize", '"all good"')],
    }
    client = server.client()
    run_id = launch(client, blueprint, {"files": ["a.py", "b.py", "c.py", "d.py"]})["run_id"]
    wait_status(client, run_id, "done")

    page.goto(f"{server.base_url}/runs/{run_id}")
    expect(page.locator(".lane")).to_have_count(4)
    expect(page.locator(".lane.st-passed")).to_have_count(4)
    page.locator('.step[data-ref="summarize"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#detail-body")).to_contain_text("all good")

    page.set_viewport_size({"width": 390, "height": 800})
    shoot(page, "run-phone")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 800})
    shoot(page, "run-dark")
