"""Ids that clients put in URLs of `mse serve` address one path segment, whatever they hold."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from mlua_swarm.paths import url_segment
from tests.mcp_adapter.conftest import error_text, mse_mcp
from tests.serverkit import ServeProcess


@pytest.mark.parametrize("name", ["R-1", "..", ".", "../runs/R-1/cancel?", "a b%2F#c", "ünï/cödé", "..."])
def test_a_url_segment_holds_the_whole_name_and_no_step(name: str) -> None:
    encoded = url_segment(name)
    assert unquote(encoded) == name
    assert "/" not in encoded and "?" not in encoded and "#" not in encoded and encoded not in (".", "..")


async def test_an_mcp_tool_cannot_be_steered_to_another_route_by_an_id(served: ServeProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = tmp_path / "wait.py"
    script.write_text(
        f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.01)\nprint('{{}}')\n"
    )
    agent = {"name": "w", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}
    bp = {
        "id": "w",
        "flow": {"kind": "step", "ref": "w", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.y"}},
        "agents": [agent],
    }
    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        run_id = http.post(
            "/v1/tasks", json={"blueprint": {"kind": "inline", "value": bp}, "init_ctx": {}, "detach": True}
        ).json()["run_id"]
        try:
            async with mse_mcp(tmp_path, {"MSE_HTTP": served.base_url}) as client:
                # "unarchive the Blueprint named ../runs/R-…/cancel?" must not cancel that run
                refused = error_text(await client.call_tool("bp_unarchive", {"id": f"../runs/{run_id}/cancel?"}))
                assert "[http-404]" in refused
            assert http.get(f"/v1/runs/{run_id}").json()["status"] == "running"
        finally:
            gate.write_text("go")
