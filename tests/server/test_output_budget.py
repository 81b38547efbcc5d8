"""A remote worker cannot make `mse serve` hold more than `max_attempt_output_bytes` for one attempt:
past it, its submit is answered 413 with the code, its attempt fails, and the run says why."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.operator import CancelFrame, OperatorClient, OperatorClientError, SpawnFrame
from mlua_swarm.server.config import load_config
from tests.operator.helpers import operator_blueprint, run_result, server_launch
from tests.server.blueprints import P, inline
from tests.serverkit import LiveServer, start_server

KIB = 1024
LIMIT = 64 * KIB

HOLD = """
import json, os, sys, time
sys.stdin.read()
json.dump({"handle": os.environ["MSE_WORKER_HANDLE"]}, open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(1)
"""
"""A child that hands its worker handle to the test and then waits until it is stopped: the test is
the remote worker, posting with that handle."""


@dataclass
class Held:
    run_id: str
    handle: str


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path, max_attempt_output_bytes=LIMIT)
    yield live
    live.stop()


def hold(live: LiveServer, tmp_path: Path) -> Held:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    env_file = tmp_path / "env.json"
    agent = {
        "name": "held",
        "kind": "subprocess",
        "spec": {"program": sys.executable, "args": [str(script), str(env_file)]},
    }
    bp = {"id": "w", "flow": {"kind": "step", "ref": "held", "in": P("$.topic"), "out": P("$.out")}, "agents": [agent]}
    body = {"blueprint": inline(bp), "init_ctx": {"topic": "t"}, "detach": True}
    run_id = live.client().post("/v1/tasks", json=body).json()["run_id"]
    deadline = time.monotonic() + 30
    while not env_file.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    return Held(run_id, json.loads(env_file.read_text())["handle"])


def test_artifacts_past_the_budget_are_refused_413_and_the_run_fails_with_the_code(
    server: LiveServer, tmp_path: Path
) -> None:
    held = hold(server, tmp_path)
    worker = server.client(token=held.handle)
    answers = [worker.post(f"/v1/worker/artifact?name=p{i}", content=b"x" * 16 * KIB) for i in range(5)]
    assert [a.status_code for a in answers[:4]] == [204, 204, 204, 204]
    refused = answers[4]
    assert refused.status_code == 413, refused.text
    body = refused.json()
    assert body["details"] == {"code": "output_budget_exceeded", "limit_bytes": LIMIT, "held_bytes": 4 * 16 * KIB}
    assert body["error"].startswith("output_budget_exceeded: attempt 1 of @held emitted an event of 16384 bytes")
    assert "max_attempt_output_bytes" in body["error"]
    # The held child never ends by itself: the run ends because the budget stopped its worker.
    record = server.wait_run(held.run_id, timeout=60)
    assert record["status"] == "failed"
    error = json.dumps(record)
    assert "output_budget_exceeded" in error and "the 4 events it had kept are dropped" in error
    steps = server.client().get(f"/v1/runs/{held.run_id}/steps").json()["steps"]
    assert [(s["status"], s["error"].split(":")[0]) for s in steps] == [("failed", "output_budget_exceeded")]
    # The attempt is over: the same handle is refused from now on.
    assert worker.post("/v1/worker/artifact?name=late", content=b"x").status_code == 410


def test_a_json_result_past_the_budget_is_refused_413(server: LiveServer, tmp_path: Path) -> None:
    held = hold(server, tmp_path)
    worker = server.client(token=held.handle)
    big = worker.post("/v1/worker/result", json={"value": {"text": "y" * (LIMIT + 1)}})
    assert big.status_code == 413 and big.json()["details"]["code"] == "output_budget_exceeded"
    assert server.wait_run(held.run_id, timeout=60)["status"] == "failed"


async def test_an_operator_sub_agent_past_the_budget_is_told_and_the_operator_gets_cancel(server: LiveServer) -> None:
    async with OperatorClient(server.base_url, desc="bot") as op:
        run_id = await server_launch(server, operator_blueprint("write"), sid=op.sid)
        spawn = await op.next_request(10)
        assert isinstance(spawn, SpawnFrame)
        sub_agent = op.worker(spawn)
        for i in range(4):
            await sub_agent.artifact(f"p{i}", "z" * 16 * KIB)
        with pytest.raises(OperatorClientError) as refused:
            await sub_agent.artifact("p4", "z" * 16 * KIB)
        assert refused.value.status == 413 and refused.value.message.startswith("output_budget_exceeded")
        told = await op.next_request(10)
        assert isinstance(told, CancelFrame) and told.req_id == spawn.req_id
        result = await run_result(server, run_id)
    assert result["status"] == "failed"
    assert "output_budget_exceeded: attempt 1 of @write" in json.dumps(result)


UNDER = """
import os, sys
sys.stdin.read()
import httpx
url, handle = os.environ["MSE_HTTP"], os.environ["MSE_WORKER_HANDLE"]
with httpx.Client(base_url=url, headers={"authorization": "Bearer " + handle}) as http:
    for name in "abc":
        http.post("/v1/worker/artifact", params={"name": name}, content=name.encode() * 16 * 1024).raise_for_status()
    http.post("/v1/worker/submit", content=b"done").raise_for_status()
"""


def test_a_run_under_the_budget_is_unaffected(server: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "under.py"
    script.write_text(UNDER)
    agent = {"name": "w", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}
    bp = {"id": "w", "flow": {"kind": "step", "ref": "w", "in": P("$.topic"), "out": P("$.out")}, "agents": [agent]}
    r = server.client().post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {"topic": "t"}})
    assert r.status_code == 200, r.text
    parts = {name: name * 16 * KIB for name in "abc"}
    assert r.json()["final_ctx"]["out"] == {"out": "done", "parts": parts}


def test_the_limits_are_config_keys_with_a_floor(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("max_attempt_output_bytes = 1048576\nsse_buffer_bytes = 2097152\n")
    loaded = load_config(config)
    assert (loaded.max_attempt_output_bytes, loaded.sse_buffer_bytes) == (1048576, 2097152)
    for key in ("max_attempt_output_bytes", "sse_buffer_bytes"):
        config.write_text(f"{key} = 10\n")
        with pytest.raises(DiagnosticError) as bad:
            load_config(config)
        diagnostic = bad.value.diagnostics[0]
        assert diagnostic.code == "invalid-config" and key in diagnostic.message
