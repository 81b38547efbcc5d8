"""Operators against a real server (uvicorn on loopback) with real WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mlua_swarm.core.events import EventStream
from mlua_swarm.operator import CancelFrame, OperatorClient, OperatorClientError, SpawnFrame
from mlua_swarm.operator.frames import HOOK_PROMPT_CAP, AskFrame
from mlua_swarm.tokens import CapToken
from tests.serverkit import LiveServer, spawn_mse_serve, start_server

from .helpers import on_server, operator_blueprint, run_result, server_launch


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
        run_id = await server_launch(live_server, operator_blueprint("write", "note"), sid=op.sid)
        spawn = await op.next_request(10)
        assert isinstance(spawn, SpawnFrame) and spawn.agent == "write"
        assert live_server.base_url in spawn.directive and f"task_id: {spawn.task_id}" in spawn.directive
        assert spawn.worker is not None and spawn.worker.variant == "claude"
        sub_agent = op.worker(spawn)
        payload = await sub_agent.fetch()
        assert payload["prompt"] == "do write" and payload["context"]["run_id"] == run_id
        await sub_agent.submit({"answer": 42})
        await op.spawn_ack(spawn.req_id, {})
        acked_only = await op.next_request(10)
        assert isinstance(acked_only, SpawnFrame) and acked_only.agent == "note"
        await op.spawn_ack(acked_only.req_id, "no sub-agent: the ack's value is the result")
        result = await run_result(live_server, run_id)
    assert result["status"] == "done"
    assert result["result"]["write"] == {"answer": 42}
    assert result["result"]["note"] == "no sub-agent: the ack's value is the result"


async def test_a_launch_pin_seats_every_declared_seat_and_bad_pins_are_400(live_server: LiveServer) -> None:
    http = live_server.client()
    sid = http.post("/v1/operators", json={"desc": "pinned"}).json()["sid"]
    raw = operator_blueprint("lead:plan", "review:check", seats=("lead", "review"))

    def launch(**pin: Any) -> httpx.Response:
        body = {"blueprint": {"kind": "inline", "value": raw}, "init_ctx": {}, "detach": True, **pin}
        return http.post("/v1/tasks", json=body)

    started = launch(operator_sid=sid, operator_desc="alice", operator_slot="review")
    assert started.status_code == 202, started.text
    seats = {s["slot"]: s["holder"] for s in started.json()["info"]["seats"]}
    assert seats["review"] == {"op": sid, "desc": "alice", "gen": 1}
    assert seats["lead"]["op"] == sid and seats["lead"]["desc"].startswith("auto-seated at launch")
    http.post(f"/v1/runs/{started.json()['run_id']}/cancel")
    refused = {
        "unknown session": launch(operator_sid="S-0000000000000000", operator_desc="x", operator_slot="lead"),
        "no desc": launch(operator_sid=sid, operator_slot="lead"),
        "blank desc": launch(operator_sid=sid, operator_desc="  ", operator_slot="lead"),
        "no slot among two seats": launch(operator_sid=sid, operator_desc="x"),
        "unknown slot": launch(operator_sid=sid, operator_desc="x", operator_slot="nobody"),
    }
    assert {why: r.status_code for why, r in refused.items()} == dict.fromkeys(refused, 400)
    assert "operator_desc" in refused["no desc"].json()["error"]
    assert "nobody" in refused["unknown slot"].json()["error"]


async def test_a_spawn_waits_for_a_reconnect_and_arrives_with_a_valid_token(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="laptop") as op:
        await op.disconnect()
        run_id = await server_launch(live_server, operator_blueprint("write"), sid=op.sid)
        await asyncio.sleep(2)
        assert live_server.client().get(f"/v1/runs/{run_id}").json()["status"] == "running"
        await op.resume()
        spawn = await op.next_request(10)
        assert isinstance(spawn, SpawnFrame)
        token = CapToken.decode(spawn.capability_token)
        assert not token.is_expired()
        assert live_server.state.engine.resolve_handle(spawn.worker_handle or "").step_id == spawn.task_id
        await op.spawn_ack(spawn.req_id, "after the nap")
        result = await run_result(live_server, run_id)
    assert result["result"]["write"] == "after the nap"


async def test_acquire_over_http_moves_the_seat_to_another_session(live_server: LiveServer) -> None:
    async with (
        OperatorClient(live_server.base_url, desc="first") as first,
        OperatorClient(live_server.base_url, desc="second") as second,
    ):
        run_id = await server_launch(live_server, operator_blueprint("write"), sid=first.sid)
        spawn = await first.next_request(10)
        assert isinstance(spawn, SpawnFrame)
        taken = await second.acquire(run_id, "taking over")
        assert taken["gen"] == 2 and taken["previous"]["op"] == first.sid
        told = await first.next_request(10)
        assert isinstance(told, CancelFrame) and told.req_id == spawn.req_id
        with pytest.raises(OperatorClientError) as late:
            await first.worker(spawn).submit("the displaced holder's late answer")
        assert late.value.status == 409 and "moved to another operator" in late.value.message
        moved = await second.next_request(10)
        assert isinstance(moved, SpawnFrame) and moved.task_id == spawn.task_id
        seats = await second.assignees(run_id)
        assert seats["seats"][0]["holder"]["op"] == second.sid and seats["generation"] == 2
        handover = await second.handover(run_id)
        assert [u["step_id"] for u in handover["unanswered"]] == [spawn.task_id]
        await second.spawn_ack(moved.req_id, "second")
        assert (await run_result(live_server, run_id))["result"]["write"] == "second"
        # The ended run's seats leave the server's memory and are still read, from the store.
        live_server.wait_run(run_id)
        assert run_id not in live_server.state.operators.seats
        seats = await second.assignees(run_id)
        assert seats["seats"][0]["holder"]["op"] == second.sid and seats["generation"] == 2
        bad = httpx.post(f"{live_server.base_url}/v1/runs/{run_id}/acquire", json={"op": "", "desc": "x"})
        assert bad.status_code == 400


async def test_senior_escalation_asks_over_the_socket(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="senior") as op:
        raw = operator_blueprint("write", spawner_hints={"layers": ["senior_escalation"]})
        run_id = await server_launch(live_server, raw, sid=op.sid)
        spawn = await op.next_request(10)
        await op.spawn_ack(spawn.req_id, "stuck", ok=False)
        ask = await op.next_request(10)
        assert isinstance(ask, AskFrame)
        await op.answer(ask.req_id, {"advice": "try again tomorrow"})
        result = await run_result(live_server, run_id)
    assert result["result"]["write"]["senior_answer"] == {"advice": "try again tomorrow"}


async def test_cancelling_the_run_sends_cancel_to_the_operator(live_server: LiveServer) -> None:
    async with OperatorClient(live_server.base_url, desc="worker") as op:
        run_id = await server_launch(live_server, operator_blueprint("write"), sid=op.sid)
        spawn = await op.next_request(10)
        engine = live_server.state.engine

        async def watch() -> EventStream:
            return engine.events()

        attempts = await on_server(live_server, watch)
        async with httpx.AsyncClient(base_url=live_server.base_url) as http:
            assert (await http.post(f"/v1/runs/{run_id}/cancel")).status_code == 204
        told = await op.next_request(10)
        assert isinstance(told, CancelFrame) and told.req_id == spawn.req_id and told.task_id == spawn.task_id
        assert (await run_result(live_server, run_id))["status"] == "cancelled"

        async def ended() -> list[tuple[str | None, str]]:
            seen = []
            while (event := attempts.get_nowait()) is not None:
                if event.kind == "task_attempt_completed":
                    seen.append((event.step_id, event.data["status"]))
            attempts.close()
            return seen

        assert await on_server(live_server, ended) == [(spawn.task_id, "cancelled")]


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


async def test_a_parked_spawn_survives_a_server_restart_and_is_reissued_on_resume(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    joined = first.client().post("/v1/operators", json={"desc": "asleep"}).json()
    try:
        run_id = await server_launch(first, operator_blueprint("write", "check"), sid=joined["sid"])
        parked = await on_server(first, _parked_on(first, joined["sid"]))
        assert parked == ["spawn"]
    finally:
        first.stop()
    second = start_server(tmp_path)
    try:
        http = second.client()
        record = http.get(f"/v1/runs/{run_id}").json()
        assert record["status"] == "interrupted" and record["resumable"] is True
        resumed = http.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 202, resumed.text
        assert await on_server(second, _parked_on(second, joined["sid"])) == ["spawn"]
        async with OperatorClient(second.base_url, sid=joined["sid"], token=joined["token"]) as op:
            for name in ("write", "check"):
                spawn = await op.next_request(10)
                assert isinstance(spawn, SpawnFrame) and spawn.agent == name
                assert not CapToken.decode(spawn.capability_token).is_expired()
                worker = op.worker(spawn)
                assert (await worker.fetch())["prompt"] == f"do {name}"
                await worker.submit(f"{name} after the restart")
                await op.spawn_ack(spawn.req_id, {})
            result = await run_result(second, run_id)
        assert result["status"] == "done"
        assert result["result"] == {"write": "write after the restart", "check": "check after the restart"}
    finally:
        second.stop()


def _parked_on(live: LiveServer, sid: str) -> Any:
    """A coroutine function: the kinds of the requests waiting on session `sid`, once one is there."""

    async def kinds() -> list[str]:
        hub = live.state.operators
        assert hub is not None
        while not hub.sessions[sid].pending:
            await asyncio.sleep(0.01)
        return [p.kind for p in hub.sessions[sid].pending.values()]

    return kinds


async def test_a_killed_server_loses_no_spawn_the_operator_was_holding(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path)}
    served = spawn_mse_serve(["--bind", "127.0.0.1:0"], env=env)
    try:
        async with OperatorClient(served.base_url, desc="holding") as op:
            sid, token = op.sid, op.token
            run_id = await server_launch(served, operator_blueprint("write"), sid=sid)
            first = await op.next_request(10)
            assert isinstance(first, SpawnFrame)
    finally:
        assert served.terminate(signal.SIGKILL) == -signal.SIGKILL
    again = spawn_mse_serve(["--bind", "127.0.0.1:0"], env=env)
    try:
        with again.client() as http:
            assert http.get(f"/v1/runs/{run_id}").json()["status"] == "interrupted"
            assert http.post(f"/v1/runs/{run_id}/resume").status_code == 202
        async with OperatorClient(again.base_url, sid=sid, token=token) as op:
            spawn = await op.next_request(10)
            assert isinstance(spawn, SpawnFrame) and spawn.task_id != first.task_id and spawn.agent == "write"
            await op.worker(spawn).submit("written after the crash")
            await op.spawn_ack(spawn.req_id, {})
            async with (
                httpx.AsyncClient(base_url=again.base_url, timeout=30) as http,
                http.stream("GET", f"/v1/runs/{run_id}/events") as events,
            ):
                async for _ in events.aiter_lines():
                    pass
                record = (await http.get(f"/v1/runs/{run_id}")).json()
        assert record["status"] == "done" and record["result"] == {"write": "written after the crash"}
    finally:
        again.terminate()


async def test_hook_before_carries_the_prompt_the_step_receives_and_its_context(
    live_server: LiveServer, tmp_path: Path
) -> None:
    http = live_server.client()
    joined = http.post("/v1/operators", json={"desc": "gatekeeper"}).json()
    long_prompt = "y" * (HOOK_PROMPT_CAP + 5000)
    raw = {
        "id": "gated",
        "flow": {
            "kind": "seq",
            "children": [
                {
                    "kind": "step",
                    "ref": "deploy",
                    "in": {"op": "path", "at": "$.request"},
                    "out": {"op": "path", "at": "$.echo"},
                },
                {
                    "kind": "step",
                    "ref": "count",
                    "in": {"op": "lit", "value": long_prompt},
                    "out": {"op": "path", "at": "$.chars"},
                },
            ],
        },
        "agents": [
            {"name": "deploy", "kind": "subprocess", "spec": {"program": "cat"}},
            {"name": "count", "kind": "subprocess", "spec": {"program": "sh", "args": ["-c", "tr -d '\\n' | wc -c"]}},
        ],
        "operators": [{"name": "human"}],
        "spawner_hints": {"layers": ["main_ai"]},
    }
    ws = live_server.base_url.replace("http", "ws")
    headers = {"Authorization": f"Bearer {joined['token']}"}
    async with connect(f"{ws}/v1/operators/{joined['sid']}/ws", additional_headers=headers, max_size=None) as sock:

        async def next_of(kind: str) -> dict[str, Any]:
            while True:
                frame: dict[str, Any] = json.loads(await asyncio.wait_for(sock.recv(), 10))
                if frame["type"] == kind:
                    return frame

        body = {
            "blueprint": {"kind": "inline", "value": raw},
            "init_ctx": {"request": {"deploy": "build 7", "to": "staging"}},
            "work_dir": str(tmp_path),
            "operator_sid": joined["sid"],
            "operator_desc": "gatekeeper",
            "detach": True,
        }
        run_id = http.post("/v1/tasks", json=body).json()["run_id"]

        gate = await next_of("hook_before")
        assert gate["agent"] == "deploy" and gate["attempt"] == 1 and gate["req_id"].startswith(joined["sid"] + "-hb-")
        assert gate["prompt"] == '{"deploy":"build 7","to":"staging"}'
        assert gate["prompt_truncated"] is False and gate["prompt_chars"] == len(gate["prompt"])
        context = gate["context"]
        assert context["run_id"] == run_id and context["task_id"] == gate["task_id"]
        assert context["agent"] == "deploy" and context["work_dir"] == str(tmp_path)
        await sock.send(json.dumps({"type": "hook_ack", "req_id": gate["req_id"], "ok": True}))

        gate = await next_of("hook_before")
        assert gate["agent"] == "count"
        assert gate["prompt"] == long_prompt[:HOOK_PROMPT_CAP]
        assert gate["prompt_truncated"] is True and gate["prompt_chars"] == len(long_prompt)
        await sock.send(json.dumps({"type": "hook_ack", "req_id": gate["req_id"], "ok": True}))
        result = await run_result(live_server, run_id)

    assert result["status"] == "done", result
    assert result["result"]["echo"] == {"deploy": "build 7", "to": "staging"}
    assert result["result"]["chars"] == len(long_prompt)


async def test_a_launch_with_a_malformed_operator_object_is_400(live_server: LiveServer) -> None:
    http = live_server.client()
    body = {"blueprint": {"kind": "inline", "value": operator_blueprint("write")}, "init_ctx": {}, "detach": True}
    refused = http.post("/v1/tasks", json={**body, "operator": {"kind": "boss"}})
    assert refused.status_code == 400 and "operator.kind must be one of" in refused.json()["error"]
    refused = http.post("/v1/tasks", json={**body, "operator": {"per_agent_kinds": {"write": 1}}})
    assert refused.status_code == 400 and "operator.per_agent_kinds.write" in refused.json()["error"]
    assert http.get("/v1/runs").json()["runs"] == []
