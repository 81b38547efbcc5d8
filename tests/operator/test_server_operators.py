"""Operators against a real server (uvicorn on loopback) with real WebSocket clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mlua_swarm.operator import CancelFrame, OperatorClient, SpawnFrame
from mlua_swarm.operator.frames import AskFrame
from mlua_swarm.tokens import CapToken
from tests.serverkit import LiveServer, start_server

from .helpers import operator_blueprint, run_result, server_launch


async def test_join_list_read_and_leave(live_server: LiveServer) -> None:
    http = live_server.client()
    joined = http.post("/v1/operators", json={"desc": "alice", "roles": ["ignored"]}).json()
    sid, token = joined["sid"], joined["token"]
    assert sid.startswith("S-") and len(token) == 32
    assert http.get("/v1/operators").status_code == 401
    listed = http.get("/v1/operators", headers={"authorization": f"Bearer {token}"}).json()
    assert [o["sid"] for o in listed["operators"]] == [sid] and listed["limit"] == 50
    mine = http.get(f"/v1/operators/{sid}", headers={"authorization": f"Bearer {token}"}).json()
    assert mine["desc"] == "alice" and mine["connected"] is False
    other = http.post("/v1/operators", json={}).json()
    wrong = http.get(f"/v1/operators/{sid}", headers={"authorization": f"Bearer {other['token']}"})
    assert wrong.status_code == 401 and "error" in wrong.json()
    assert http.delete(f"/v1/operators/{sid}", headers={"authorization": f"Bearer {token}"}).status_code == 204
    gone = http.get(f"/v1/operators/{sid}", headers={"authorization": f"Bearer {token}"})
    assert gone.status_code == 404


async def test_the_socket_refuses_a_wrong_bearer_and_an_unknown_session(live_server: LiveServer) -> None:
    joined = live_server.client().post("/v1/operators", json={}).json()
    ws = live_server.base_url.replace("http", "ws")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{ws}/v1/operators/{joined['sid']}/ws", additional_headers={"Authorization": "Bearer x"}):
            pass
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as unknown:
        async with connect(f"{ws}/v1/operators/S-nobody/ws", additional_headers={"Authorization": "Bearer x"}):
            pass
    assert unknown.value.response.status_code == 404


async def test_an_operator_step_completes_through_spawn_and_ack(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="bot") as op:
        assert live_server.client().get("/v1/status").json()["attached_operators"] == 1
        _, task = await server_launch(live_server, operator_blueprint("write"), sid=op.sid)
        spawn = await op.next_request(10)
        assert isinstance(spawn, SpawnFrame) and spawn.agent == "write"
        assert live_server.base_url in spawn.directive
        await op.spawn_ack(spawn.req_id, {"answer": 42})
        result = await run_result(live_server, task)
    assert result.status == "done" and result.final_ctx["write"] == {"answer": 42}


async def test_a_spawn_waits_for_a_reconnect_and_arrives_with_a_valid_token(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="laptop") as op:
        await op.disconnect()
        _, task = await server_launch(live_server, operator_blueprint("write"), sid=op.sid)
        await asyncio.sleep(2)
        assert not task.done()
        await op.resume()
        spawn = await op.next_request(10)
        assert isinstance(spawn, SpawnFrame)
        token = CapToken.decode(spawn.capability_token)
        assert not token.is_expired()
        assert live_server.state.engine.resolve_handle(spawn.worker_handle or "").step_id == spawn.task_id
        await op.spawn_ack(spawn.req_id, "after the nap")
        result = await run_result(live_server, task)
    assert result.final_ctx["write"] == "after the nap"


async def test_acquire_over_http_moves_the_seat_to_another_session(live_server: LiveServer) -> None:
    async with (
        OperatorClient(live_server.base_url, desc="first") as first,
        OperatorClient(live_server.base_url, desc="second") as second,
    ):
        control, task = await server_launch(live_server, operator_blueprint("write"), sid=first.sid)
        spawn = await first.next_request(10)
        assert isinstance(spawn, SpawnFrame)
        taken = await second.acquire(control.run_id, "taking over")
        assert taken["gen"] == 2 and taken["previous"]["op"] == first.sid
        told = await first.next_request(10)
        assert isinstance(told, CancelFrame) and told.req_id == spawn.req_id
        moved = await second.next_request(10)
        assert isinstance(moved, SpawnFrame) and moved.task_id == spawn.task_id
        seats = await second.assignees(control.run_id)
        assert seats["seats"][0]["holder"]["op"] == second.sid and seats["generation"] == 2
        handover = await second.handover(control.run_id)
        assert [u["step_id"] for u in handover["unanswered"]] == [spawn.task_id]
        await second.spawn_ack(moved.req_id, "second")
        assert (await run_result(live_server, task)).final_ctx["write"] == "second"
        bad = httpx.post(f"{live_server.base_url}/v1/runs/{control.run_id}/acquire", json={"op": "", "desc": "x"})
        assert bad.status_code == 400


async def test_senior_escalation_asks_over_the_socket(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="senior") as op:
        raw = operator_blueprint("write", spawner_hints={"layers": ["senior_escalation"]})
        _, task = await server_launch(live_server, raw, sid=op.sid)
        spawn = await op.next_request(10)
        await op.spawn_ack(spawn.req_id, "stuck", ok=False)
        ask = await op.next_request(10)
        assert isinstance(ask, AskFrame)
        await op.answer(ask.req_id, {"advice": "try again tomorrow"})
        result = await run_result(live_server, task)
    assert result.final_ctx["write"]["senior_answer"] == {"advice": "try again tomorrow"}


async def test_cancelling_the_run_sends_cancel_to_the_operator(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="worker") as op:
        control, task = await server_launch(live_server, operator_blueprint("write"), sid=op.sid)
        spawn = await op.next_request(10)
        live_server.loop.call_soon_threadsafe(control.cancel, "operator test")
        told = await op.next_request(10)
        assert isinstance(told, CancelFrame) and told.req_id == spawn.req_id
        assert (await run_result(live_server, task)).status == "cancelled"


async def test_a_session_survives_a_server_restart(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    joined = first.client().post("/v1/operators", json={"desc": "durable"}).json()
    first.stop()
    second = start_server(tmp_path)
    try:
        async with OperatorClient(second.base_url, sid=joined["sid"], token=joined["token"]) as op:
            info = await op.info()
            assert info["desc"] == "durable" and info["connected"] is True
    finally:
        second.stop()
