"""A run killed (SIGKILL) after a step returned a 1.5 MB value resumes without running that step
again, and the value it replays is the one the step returned."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

from ..conftest import json_of, run_mse, start_mse, wait_for_file

AGENTS = """
import asyncio, hashlib, os, pathlib

def _log(line):
    with open(os.environ["STEP_LOG"], "a") as fh:
        fh.write(line + "\\n")

async def big(inv):
    value = {"text": "é" * 500_000 + "x" * 500_000, "n": inv.input}
    _log("big")
    return value

async def small(inv):
    _log("small")
    return "ok"

async def last(inv):
    if not pathlib.Path(os.environ["ALLOW_FILE"]).exists():
        pathlib.Path(os.environ["PARK_FILE"]).write_text("parked")
        await asyncio.Event().wait()
    _log("last")
    return hashlib.sha256(inv.input["text"].encode()).hexdigest()
"""


def P(at: str) -> dict[str, str]:
    return {"op": "path", "at": at}


FLOW = {
    "kind": "seq",
    "children": [
        {"kind": "step", "ref": "big", "in": {"op": "lit", "value": 7}, "out": P("$.big")},
        {"kind": "step", "ref": "small", "in": {"op": "lit", "value": 1}, "out": P("$.small")},
        {"kind": "step", "ref": "last", "in": P("$.big"), "out": P("$.digest")},
    ],
}


def test_a_run_killed_after_a_large_value_resumes_with_that_value(tmp_path: Path) -> None:
    (tmp_path / "big_value_agents.py").write_text(AGENTS)
    agents = [
        {"name": n, "kind": "python", "spec": {"callable": f"big_value_agents:{n}"}} for n in ("big", "small", "last")
    ]
    bp = tmp_path / "bp.json"
    bp.write_text(json.dumps({"id": "big-value", "flow": FLOW, "agents": agents}))
    env = {
        "MSE_HOME": str(tmp_path / "home"),
        "STEP_LOG": str(tmp_path / "steps.log"),
        "PARK_FILE": str(tmp_path / "parked"),
        "ALLOW_FILE": str(tmp_path / "allow"),
    }
    log = tmp_path / "steps.log"

    child = start_mse(["run", str(bp), "--json"], env=env)
    wait_for_file(tmp_path / "parked", child)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert log.read_text().splitlines() == ["big", "small"]

    [run] = json_of(run_mse(["runs", "list", "--json"], env=env))
    assert run["status"] == "interrupted"
    (tmp_path / "allow").write_text("")
    resumed = run_mse(["runs", "resume", run["run_id"], "--json"], env=env)
    assert resumed.returncode == 0, resumed.stderr
    ctx = json_of(resumed)["final_ctx"]
    expected = "é" * 500_000 + "x" * 500_000
    assert ctx["big"] == {"text": expected, "n": 7}
    assert ctx["digest"] == hashlib.sha256(expected.encode()).hexdigest()
    assert log.read_text().splitlines() == ["big", "small", "last"]
