"""A running step shows at its own node: its `step.started` event names the node (`node_index`), so
while one of several nodes of one agent runs, and before its entry is recorded, the run page draws
it there and not at the agent's first node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from tests.dashboard.conftest import Gate, gated_step, launch, seq, step
from tests.server.sse import sse_events
from tests.serverkit import LiveServer


def empty_fanout_then_try(gate: Gate) -> dict[str, Any]:
    """A fanout of agent `x` over no items, then a `try` around `x` (blocked on `gate`).

    Nodes in pre-order: seq 0, fanout 1, its x 2, try 3, its x 4, the catch's assign 5.
    """
    flow = seq(
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
            "body": step("x", "$.again"),
            "catch": {"kind": "assign", "at": {"op": "path", "at": "$.caught"}, "value": {"op": "lit", "value": 1}},
        },
    )
    return {"id": "empty-fanout-then-try", "flow": flow, "agents": [gated_step("x", gate, '"done"')]}


def test_a_running_step_of_an_agent_at_two_nodes_shows_at_its_own_node(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    gate = Gate(tmp_path / "gate")
    client = server.client()
    run_id = launch(client, empty_fanout_then_try(gate), {"items": []})["run_id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        started = next(e for e in sse_events(response) if e["kind"] == "step.started")
    assert started["step"] == "x" and started["data"]["node_index"] == 4
    assert started["data"]["step_id"].startswith("ST-")
    trace = client.get(f"/v1/runs/{run_id}/trace", params={"kind": "step.started"}).json()["events"]
    assert [e["payload"]["node_index"] for e in trace] == [4]

    page.goto(f"{server.base_url}/runs/{run_id}")
    fanout_x, try_x = page.locator('.n-fanout .step[data-ref="x"]'), page.locator('.n-try .step[data-ref="x"]')
    expect(try_x).to_have_attribute("data-state", "running")
    expect(try_x).to_have_attribute("data-count", "1")
    expect(fanout_x).to_have_attribute("data-state", "pending")
    expect(fanout_x).to_have_attribute("data-count", "0")
    expect(page.locator(".n-fanout .lanes-sum")).to_have_text("no lanes yet")

    gate.release()
    expect(page.locator("#run-status")).to_have_text("done")
    expect(try_x).to_have_attribute("data-state", "passed")
    expect(fanout_x).to_have_attribute("data-state", "pending")
    expect(fanout_x).to_have_attribute("data-count", "0")
