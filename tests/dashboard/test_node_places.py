"""One agent at several places of a flow: the run page draws each run where it ran (its entry's
node_index), live and on a reload, and a run recorded without node indexes falls back to ref order."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from tests.dashboard.conftest import Gate, launch, seq, shoot, step
from tests.serverkit import LiveServer

TIMES = "\u00d7"
"""The sign before a step's run count on the run page (the multiplication sign)."""


def fanout_then_try() -> dict[str, Any]:
    """A fanout of agent `x` over three items, then a `try` around `x` again (its input `"t"`)."""
    return seq(
        {
            "kind": "fanout",
            "items": {"op": "path", "at": "$.items"},
            "bind": {"op": "path", "at": "$.item"},
            "body": step("x", "$.lane_out", "$.item"),
            "join": "all",
            "out": {"op": "path", "at": "$.lanes"},
        },
        {
            "kind": "try",
            "body": {**step("x", "$.again"), "in": {"op": "lit", "value": "t"}},
            "catch": {"kind": "assign", "at": {"op": "path", "at": "$.caught"}, "value": {"op": "lit", "value": 1}},
        },
    )


def gated_by_input(name: str, folder: Path) -> dict[str, Any]:
    """A `subprocess` agent that waits for the gate named by its input (a file in `folder`)."""
    script = f"""g=$(cat); cat "{folder}/$g" > /dev/null; printf '%s' '"done"'"""
    return {"name": name, "kind": "subprocess", "spec": {"program": "sh", "args": ["-c", script]}}


def expect_each_run_where_it_ran(page: Page) -> None:
    fanout_x, try_x = page.locator('.n-fanout .step[data-ref="x"]'), page.locator('.n-try .step[data-ref="x"]')
    expect(page.locator(".n-fanout .lanes .lane")).to_have_count(3)
    expect(page.locator(".n-fanout .lanes-sum")).to_have_text("3 lanes · 3 passed")
    expect(fanout_x).to_have_attribute("data-count", "3")
    expect(fanout_x).to_contain_text(f"{TIMES}3")
    expect(try_x).to_have_attribute("data-count", "1")
    expect(try_x).to_have_attribute("data-state", "passed")
    expect(try_x).not_to_contain_text(TIMES)


def test_a_fanout_over_an_agent_then_a_try_around_it_draws_each_run_where_it_ran(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    gates = {name: Gate(tmp_path / name) for name in ("a", "b", "c", "t")}
    blueprint = {"id": "fanout-then-try", "flow": fanout_then_try(), "agents": [gated_by_input("x", tmp_path)]}
    client = server.client()
    run_id = launch(client, blueprint, {"items": ["a", "b", "c"]})["run_id"]
    page.goto(f"{server.base_url}/runs/{run_id}")
    fanout_x, try_x = page.locator('.n-fanout .step[data-ref="x"]'), page.locator('.n-try .step[data-ref="x"]')

    # While the lanes run, before any entry is recorded, they are drawn on the fanout.
    expect(page.locator(".n-fanout .lanes-sum")).to_have_text("3 lanes · 3 running")
    expect(fanout_x).to_have_attribute("data-state", "running")
    expect(try_x).to_have_attribute("data-state", "pending")
    for lane in ("a", "b", "c"):
        gates[lane].release()
    expect(page.locator(".n-fanout .lanes-sum")).to_have_text("3 lanes · 3 passed")
    expect(try_x).to_have_attribute("data-state", "running")
    expect(try_x).to_have_attribute("data-count", "1")
    gates["t"].release()

    expect(page.locator("#run-status")).to_have_text("done")
    expect_each_run_where_it_ran(page)
    # Nodes in pre-order: seq 0, fanout 1, its x 2, try 3, its x 4, the catch's assign 5.
    placed = [("x", 2), ("x", 2), ("x", 2), ("x", 4)]
    for route in (f"/ui/api/runs/{run_id}", f"/ui/api/runs/{run_id}/live?from=0"):
        entries = client.get(route).json()["steps"]
        assert [(e["step_ref"], e["node_index"]) for e in entries] == placed, route

    page.reload()
    expect(page.locator("#run-status")).to_have_text("done")
    expect_each_run_where_it_ran(page)
    shoot(page, "run-places")

    # The same run as a store from before node indexes has it (in its entries and its step.started
    # events): its runs of `x` go by ref order.
    with closing(sqlite3.connect(tmp_path / "server.sqlite3", timeout=30)) as conn, conn:
        conn.execute(
            "UPDATE history SET node_index = NULL WHERE key >> 32 = (SELECT num FROM runs WHERE id = ?)", (run_id,)
        )
        conn.execute(
            "UPDATE trace SET payload_json = json_remove(payload_json, '$.node_index')"
            " WHERE run_id = ? AND kind = 'step.started'",
            (run_id,),
        )
    page.reload()
    expect(page.locator("#run-status")).to_have_text("done")
    expect(page.locator(".n-fanout .lanes .lane")).to_have_count(1)
    expect(fanout_x).to_have_attribute("data-count", "1")
    expect(try_x).to_have_attribute("data-count", "3")
