"""Whole journeys through the real pieces: `mse run --server --operator-sid` launches a Blueprint whose
fanout sends some lanes to an operator (a Python `OperatorClient` over the socket) and the others
to an in-process Python agent; `mse run` prints the joined result and `mse runs steps` agrees."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mlua_swarm.operator import OperatorClient, SpawnFrame
from tests.conftest import mse_env, run_mse
from tests.serverkit import LiveServer

MIXED: dict[str, Any] = {
    "id": "mixed",
    "operators": [{"name": "desk", "kind": "automate"}],
    "flow": {
        "kind": "fanout",
        "items": {"op": "path", "at": "$.jobs"},
        "bind": {"op": "path", "at": "$.job"},
        "body": {
            "kind": "branch",
            "cond": {"op": "eq", "lhs": {"op": "path", "at": "$.job.who"}, "rhs": {"op": "lit", "value": "person"}},
            "then": {
                "kind": "step",
                "ref": "person",
                "in": {"op": "path", "at": "$.job.n"},
                "out": {"op": "path", "at": "$.r"},
            },
            "else": {
                "kind": "step",
                "ref": "double",
                "in": {"op": "path", "at": "$.job.n"},
                "out": {"op": "path", "at": "$.r"},
            },
        },
        "join": "all",
        "out": {"op": "path", "at": "$.results"},
        "collect": {"op": "path", "at": "$.r"},
    },
    "agents": [
        {"name": "double", "kind": "python", "spec": {"callable": "lanes:double"}},
        {
            "name": "person",
            "kind": "operator",
            "spec": {"operator_ref": "desk"},
            "runner": {"backend": "ws_operator", "variant": "human", "tools": []},
        },
    ],
}
JOBS = [{"who": "bot", "n": 1}, {"who": "person", "n": 2}, {"who": "bot", "n": 3}, {"who": "person", "n": 4}]


def write_mixed(folder: Path) -> Path:
    (folder / "lanes.py").write_text("def double(inv):\n    return inv.input * 2\n")
    bp = folder / "mixed.json"
    bp.write_text(json.dumps(MIXED))
    return bp


async def answer_spawns(op: OperatorClient, answered: list[str]) -> None:
    """The operator: each spawn's sub-agent fetches its prompt and submits a value made from it."""
    async for request in op.requests():
        if isinstance(request, SpawnFrame):
            worker = op.worker(request)
            payload = await worker.fetch()
            await worker.submit(f"seen {payload['prompt']}")
            await op.spawn_ack(request.req_id, {})
            answered.append(request.task_id)


async def test_mse_run_pins_an_operator_that_answers_its_lanes_beside_python_lanes(
    live_server: LiveServer, tmp_path: Path
) -> None:
    bp = write_mixed(tmp_path)
    env = {"MSE_HTTP": "", "MSE_ADMIN_TOKEN": "", "MSE_HOME": str(tmp_path / "home"), "USER": "dana"}
    async with OperatorClient(live_server.base_url, desc="lane desk") as op:
        answered: list[str] = []
        answering = asyncio.create_task(answer_spawns(op, answered))
        try:
            run = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mlua_swarm",
                "run",
                str(bp),
                "--server",
                live_server.base_url,
                "--operator-sid",
                str(op.sid),
                "--init",
                json.dumps({"jobs": JOBS}),
                "--json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=mse_env(env),
            )
            out, err = await asyncio.wait_for(run.communicate(), 60)
        finally:
            answering.cancel()
    assert run.returncode == 0, err.decode()
    document = json.loads(out)
    assert document["status"] == "done"
    assert document["final_ctx"]["results"] == [2, "seen 2", 6, "seen 4"]
    assert len(answered) == 2
    seats = live_server.client().get(f"/v1/runs/{document['run_id']}/assignees", headers=bearer(op)).json()
    assert [(seat["slot"], seat["holder"]["op"], seat["holder"]["desc"]) for seat in seats["seats"]] == [
        ("desk", op.sid, "dana via mse run")
    ]
    steps = run_mse(["runs", "steps", document["run_id"], "--json", "--server", live_server.base_url], env=env)
    assert steps.returncode == 0, steps.stderr
    rows = json.loads(steps.stdout)
    rows = rows["steps"] if isinstance(rows, dict) else rows
    assert sorted((row["step_ref"], row["status"], row["attempt"]) for row in rows) == [
        ("double", "passed", 1),
        ("double", "passed", 1),
        ("person", "passed", 1),
        ("person", "passed", 1),
    ]
    assert {row["step_id"] for row in rows if row["step_ref"] == "person"} == set(answered)


def bearer(op: OperatorClient) -> dict[str, str]:
    return {"authorization": f"Bearer {op.token}"}


def test_operator_flags_without_a_server_or_a_sid_are_diagnostics(live_server: LiveServer, tmp_path: Path) -> None:
    bp = write_mixed(tmp_path)
    env = {"MSE_HTTP": "", "MSE_ADMIN_TOKEN": "", "MSE_HOME": str(tmp_path / "home")}
    local = run_mse(["run", str(bp), "--operator-sid", "S-0123456789abcdef"], env=env)
    assert local.returncode == 2 and "Traceback" not in local.stderr
    assert "error[invalid-argument] command line: --operator-sid pins the seats of a run on a server" in local.stderr
    assert "hint: add --server URL" in local.stderr
    orphan = run_mse(["run", str(bp), "--server", live_server.base_url, "--operator-slot", "desk"], env=env)
    assert orphan.returncode == 2
    assert "--operator-desc and --operator-slot describe the pin of --operator-sid, which is missing" in orphan.stderr
    unknown = run_mse(
        ["run", str(bp), "--server", live_server.base_url, "--operator-sid", "S-0123456789abcdef"], env=env
    )
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "operator session S-0123456789abcdef not found" in unknown.stderr
    two_seats = tmp_path / "two-seats.json"
    two_seats.write_text(json.dumps({**MIXED, "operators": [{"name": "desk"}, {"name": "lead"}]}))
    unnamed = run_mse(["run", str(two_seats), "--server", live_server.base_url, "--operator-sid", "S-01"], env=env)
    assert unnamed.returncode == 2
    assert "the Blueprint declares 2 operator seats (desk, lead): --operator-sid holds one" in unnamed.stderr
    assert "hint: name it with --operator-slot" in unnamed.stderr
    unpinned = run_mse(["run", str(bp)], env=env)
    assert unpinned.returncode == 2
    assert "`mse run --server URL --operator-sid S-…`" in unpinned.stderr
    assert live_server.client().get("/v1/runs").json()["runs"] == []
