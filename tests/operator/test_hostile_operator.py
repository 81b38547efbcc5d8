"""An operator and its sub-agent sending what no JSON writer produces, on a real server and socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from mlua_swarm.operator import OperatorClient, SpawnFrame
from tests.operator.helpers import operator_blueprint
from tests.serverkit import LiveServer


async def _spawned(live: LiveServer, blueprint: dict[str, Any]) -> tuple[str, ClientConnection, dict[str, Any]]:
    """Join, launch `blueprint` pinned to the session, attach its socket; the run, socket and first spawn."""
    http = live.client()
    joined = http.post("/v1/operators", json={"desc": "probe"}).json()
    launch = {
        "blueprint": {"kind": "inline", "value": blueprint},
        "operator_sid": joined["sid"],
        "operator_desc": "probe",
        "detach": True,
    }
    run = http.post("/v1/tasks", json=launch).json()["run_id"]
    url = live.base_url.replace("http", "ws") + f"/v1/operators/{joined['sid']}/ws"
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {joined['token']}"})
    spawn = json.loads(await ws.recv())
    assert spawn["type"] == "spawn"
    return run, ws, spawn


async def _frame(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return frame


async def test_a_spawn_ack_carrying_nan_is_dropped_like_any_frame_that_is_not_json(live_server: LiveServer) -> None:
    run, ws, spawn = await _spawned(live_server, operator_blueprint("solo"))
    async with ws:
        ack = json.dumps({"type": "spawn_ack", "req_id": spawn["req_id"], "value": {"x": 1}})
        # Frames of one socket are handled in order: the NaN ack is judged before the good one arrives.
        await ws.send(ack.replace('"x": 1', '"x": NaN'))
        await ws.send(ack)
        record = live_server.wait_run(run)
    assert record["status"] == "done", record
    http = live_server.client()
    assert http.get(f"/v1/runs/{run}").json()["result"]["solo"] == {"x": 1}
    trace = http.get(f"/v1/runs/{run}/trace")
    assert trace.status_code == 200 and trace.json()["events"]


async def test_a_json_submit_that_is_not_json_data_is_a_422_not_a_server_error(live_server: LiveServer) -> None:
    blueprint = operator_blueprint("solo")
    blueprint["agents"][0]["meta"] = {"ctx": {"submit_format": "json"}}
    run, ws, spawn = await _spawned(live_server, blueprint)
    async with ws:
        http = live_server.client(token=spawn["worker_handle"])
        for body in ('{"x": NaN}', '{"x": 1e999}', "[" * 100_000 + "]" * 100_000):
            refused = http.post("/v1/worker/submit", content=body)
            assert refused.status_code == 422, refused.text
            assert "submit_format is json but the body is not JSON" in refused.json()["error"]
        assert http.post("/v1/worker/submit", content='{"x": 2}').status_code == 204
        await ws.send(json.dumps({"type": "spawn_ack", "req_id": spawn["req_id"], "value": {}}))
        record = live_server.wait_run(run)
    assert record["status"] == "done" and record["result"]["solo"] == {"x": 2}


async def test_the_data_plane_index_keeps_a_bounded_weight_of_records(live_server: LiveServer) -> None:
    budget = 3 * 2**20

    async def shrink() -> None:
        live_server.state.data_index.max_bytes = budget

    async def held() -> int:
        return live_server.state.data_index.held_bytes

    live_server.call(shrink)
    run, ws, spawn = await _spawned(live_server, operator_blueprint("solo"))
    async with ws:
        http = live_server.client(token=spawn["worker_handle"])
        big = {"event": {"type": "progress", "stage": "x" * 2**20}}
        ids = [http.post("/v1/data/emit", json=big).json()["out_id"] for _ in range(4)]
        assert http.get(f"/v1/data/{ids[0]}").status_code == 404
        assert http.get(f"/v1/data/{ids[-1]}").json()["out_id"] == ids[-1]
        assert 2**20 < live_server.call(held) <= budget
        await ws.send(json.dumps({"type": "spawn_ack", "req_id": spawn["req_id"], "value": {}}))
        assert live_server.wait_run(run)["status"] == "done"


async def test_frames_carry_integers_past_64_bits(live_server: LiveServer) -> None:
    big = 2**70
    blueprint = operator_blueprint("solo", spawner_hints={"layers": ["main_ai"]})
    blueprint["flow"]["in"] = {"op": "path", "at": "$.d"}
    http = live_server.client()
    joined = http.post("/v1/operators", json={"desc": "probe"}).json()
    url = live_server.base_url.replace("http", "ws") + f"/v1/operators/{joined['sid']}/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {joined['token']}"}) as ws:
        launch = {
            "blueprint": {"kind": "inline", "value": blueprint},
            "init_ctx": {"d": {"n": big}},
            "task_metadata": {"n": big},
            "operator_sid": joined["sid"],
            "operator_desc": "probe",
            "detach": True,
        }
        run = http.post("/v1/tasks", json=launch).json()["run_id"]
        gate = await _frame(ws)
        assert gate["type"] == "hook_before" and gate["context"]["task_metadata"] == {"n": big}
        await ws.send(json.dumps({"type": "hook_ack", "req_id": gate["req_id"], "ok": True}))
        spawn = await _frame(ws)
        assert spawn["type"] == "spawn"
        await ws.send(json.dumps({"type": "spawn_ack", "req_id": spawn["req_id"], "value": {"m": big}}))
        after = await _frame(ws)
        assert after["type"] == "hook_after" and after["result"] == {"m": big}
        record = live_server.wait_run(run)
    assert record["status"] == "done" and record["result"]["solo"] == {"m": big}, record


async def test_the_operator_client_sends_an_integer_past_64_bits(live_server: LiveServer) -> None:
    big = 2**70
    async with OperatorClient(live_server.base_url, desc="probe") as op:
        launch = {
            "blueprint": {"kind": "inline", "value": operator_blueprint("solo")},
            "operator_sid": op.sid,
            "operator_desc": "probe",
            "detach": True,
        }
        run = live_server.client().post("/v1/tasks", json=launch).json()["run_id"]
        spawn = await op.next_request(timeout=30)
        assert isinstance(spawn, SpawnFrame)
        await op.spawn_ack(spawn.req_id, {"m": big})
        record = live_server.wait_run(run)
    assert record["status"] == "done" and record["result"]["solo"] == {"m": big}, record
