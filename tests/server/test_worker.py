"""Worker IN/OUT over HTTP: a child fetches and submits with its own credential; every route checks it."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlua_swarm.tokens import Role, TokenBook
from tests.server.blueprints import P, inline
from tests.server.sse import sse_events
from tests.serverkit import LiveServer, start_server

WORKER_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/worker/prompt", {}),
    ("GET", "/v1/worker/prompt/system", {}),
    ("POST", "/v1/worker/submit", {"content": b"x"}),
    ("POST", "/v1/worker/artifact?name=a", {"content": b"x"}),
    ("POST", "/v1/worker/result", {"json": {"value": 1}}),
    ("POST", "/v1/worker/stats", {"json": {"model": "m"}}),
    ("POST", "/v1/worker/degradation", {"json": {"tool": "t", "error": "e", "fallback": "f"}}),
    ("POST", "/v1/data/emit", {"json": {"event": {"type": "progress", "stage": "s", "note": "n"}}}),
    ("POST", "/v1/data/named", {"json": {"event": {"type": "progress", "stage": "s", "note": "n"}}}),
    ("GET", "/v1/data/out-0000000000", {}),
]


def one_step(agent: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "w",
        "flow": {"kind": "step", "ref": agent["name"], "in": P("$.topic"), "out": P("$.out")},
        "agents": [agent],
        **extra,
    }


def test_shell_child_fetches_and_submits_over_http(live_server: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "worker.sh"
    script.write_text(
        textwrap.dedent(
            """\
            set -e
            cat > /dev/null
            prompt=$("$PY" -m mlua_swarm worker fetch)
            "$PY" -m mlua_swarm worker artifact notes "seen: $prompt"
            "$PY" -m mlua_swarm worker stats '{"model": "m1", "usage": {"input_tokens": 3}}'
            "$PY" -m mlua_swarm worker submit "done: $prompt"
            """
        )
    )
    agent = {
        "name": "sh",
        "kind": "subprocess",
        "spec": {"program": "sh", "args": [str(script)], "env": {"PY": sys.executable}},
    }
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline(one_step(agent)), "init_ctx": {"topic": "hello"}})
    assert r.status_code == 200, r.text
    assert r.json()["final_ctx"]["out"] == {"out": "done: hello", "parts": {"notes": "seen: hello"}}
    steps = c.get(f"/v1/runs/{r.json()['run_id']}/steps").json()["steps"]
    assert steps[0]["stats"]["model"] == "m1"


@dataclass
class Held:
    """A run whose subprocess step wrote its credentials and now waits for the gate."""

    run_id: str
    env: dict[str, str]
    gate: Path


HOLD = """
import json, os, sys, time
sys.stdin.read()
keys = ("MSE_HTTP", "MSE_WORKER_HANDLE", "MSE_TOKEN", "MSE_TASK_ID", "MSE_ATTEMPT")
json.dump({k: os.environ.get(k) for k in keys}, open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
"""


def hold(live: LiveServer, tmp_path: Path, name: str, launch: dict[str, Any] | None = None, **agent_extra: Any) -> Held:
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    env_file, gate = tmp_path / f"{name}.env.json", tmp_path / f"{name}.gate"
    agent = {
        "name": name,
        "kind": "subprocess",
        "spec": {"program": sys.executable, "args": [str(script), str(env_file), str(gate)]},
        **agent_extra,
    }
    body = {"blueprint": inline(one_step(agent)), "init_ctx": {"topic": "t"}, "detach": True, **(launch or {})}
    run_id = live.client().post("/v1/tasks", json=body).json()["run_id"]
    deadline = time.monotonic() + 30
    while not env_file.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    return Held(run_id, json.loads(env_file.read_text()), gate)


@pytest.fixture
def held(live_server: LiveServer, tmp_path: Path) -> Iterator[Held]:
    h = hold(live_server, tmp_path, "holder")
    yield h
    h.gate.write_text("go")


def auth(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def test_child_gets_the_server_url_and_its_prompt(live_server: LiveServer, held: Held) -> None:
    assert held.env["MSE_HTTP"] == live_server.base_url
    c = live_server.client()
    payload = c.get("/v1/worker/prompt", headers=auth(held.env["MSE_WORKER_HANDLE"])).json()
    assert payload["task_id"] == held.env["MSE_TASK_ID"] and payload["prompt"] == "t"
    assert payload["context"]["run_id"] == held.run_id
    same = c.get("/v1/worker/prompt", params={"task_id": held.env["MSE_TASK_ID"]}, headers=auth(held.env["MSE_TOKEN"]))
    assert same.status_code == 200


def test_missing_forged_expired_and_foreign_credentials_are_refused_everywhere(
    live_server: LiveServer, tmp_path: Path
) -> None:
    first = hold(live_server, tmp_path, "one")
    second = hold(live_server, tmp_path, "two")
    c = live_server.client()
    token = first.env["MSE_TOKEN"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    secret = live_server.state.engine.config.token_secret
    assert secret is not None
    expired = TokenBook(secret).mint("worker-of-x", Role.WORKER, -10).encode()
    operator = TokenBook(secret).mint("op", Role.OPERATOR, 60).encode()
    for method, path, kwargs in WORKER_ROUTES:
        assert c.request(method, path, **kwargs).status_code == 401, path
        for bad in ("wh-00000000", forged, "not-a-token", expired):
            r = c.request(method, path, headers=auth(bad), **kwargs)
            assert r.status_code == 401, (path, bad[:10], r.text)
            assert "error" in r.json()
        assert c.request(method, path, headers=auth(operator), **kwargs).status_code == 403, path
        other = {"task_id": second.env["MSE_TASK_ID"]}
        for mine in (first.env["MSE_WORKER_HANDLE"], token):
            r = c.request(method, path, params=other, headers=auth(mine), **kwargs)
            assert r.status_code == 403, (path, r.text)
    first.gate.write_text("go")
    second.gate.write_text("go")


def test_credentials_of_an_ended_run_get_410(live_server: LiveServer, tmp_path: Path) -> None:
    h = hold(live_server, tmp_path, "ender")
    c = live_server.client()
    handle, token = h.env["MSE_WORKER_HANDLE"], h.env["MSE_TOKEN"]
    assert c.get("/v1/worker/prompt", headers=auth(handle)).status_code == 200
    assert c.post(f"/v1/runs/{h.run_id}/cancel").status_code == 204
    live_server.wait_run(h.run_id)
    for credential in (handle, token):
        r = c.post("/v1/worker/submit", content=b"late", headers=auth(credential))
        assert r.status_code == 410, r.text
    h.gate.write_text("go")


def test_submit_with_verdicts_contract_and_formats(live_server: LiveServer, tmp_path: Path) -> None:
    c = live_server.client()
    h = hold(live_server, tmp_path, "judge", verdict={"values": ["PASS", "FAIL"], "channel": "body"})
    who = auth(h.env["MSE_WORKER_HANDLE"])
    assert c.post("/v1/worker/submit", params={"verdict": "maybe"}, content=b"x", headers=who).status_code == 400
    conflict = c.post("/v1/worker/submit", params={"verdict": "blocked", "ok": "true"}, content=b"x", headers=who)
    assert conflict.status_code == 400
    rejected = c.post("/v1/worker/submit", content=b"MAYBE", headers=who)
    assert rejected.status_code == 422 and "MAYBE" in rejected.json()["error"]
    assert c.post("/v1/worker/submit", content=b"PASS\n", headers=who).status_code == 204
    h.gate.write_text("go")
    run = live_server.wait_run(h.run_id)
    assert run["status"] == "done" and run["result"]["out"] == "PASS"


def test_submit_format_json_and_blocked(live_server: LiveServer, tmp_path: Path) -> None:
    c = live_server.client()
    h = hold(live_server, tmp_path, "jsonish", meta={"ctx": {"submit_format": "json"}})
    who = auth(h.env["MSE_WORKER_HANDLE"])
    bad = c.post("/v1/worker/submit", content=b"{nope", headers=who)
    assert bad.status_code == 422
    assert c.post("/v1/worker/submit", params={"ok": "false"}, content=b'{"why": "no"}', headers=who).status_code == 204
    h.gate.write_text("go")
    run = live_server.wait_run(h.run_id)
    assert run["status"] == "failed"


def test_file_sentinel_needs_opt_in_and_stays_in_the_work_dir(live_server: LiveServer, tmp_path: Path) -> None:
    c = live_server.client()
    work = tmp_path / "work"
    work.mkdir()
    (work / "answer.txt").write_text("from a file")
    (tmp_path / "secret.txt").write_text("no")
    h = hold(live_server, tmp_path, "filer", {"work_dir": str(work)}, meta={"ctx": {"allow_file_submit": True}})
    who = auth(h.env["MSE_WORKER_HANDLE"])
    assert c.post("/v1/worker/submit", content=b"@file:relative.txt", headers=who).status_code == 400
    outside = c.post("/v1/worker/submit", content=f"@file:{tmp_path / 'secret.txt'}".encode(), headers=who)
    assert outside.status_code == 400 and "outside" in outside.json()["error"]
    sneaky = c.post("/v1/worker/submit", content=f"@file:{work}/../secret.txt".encode(), headers=who)
    assert sneaky.status_code == 400
    assert c.post("/v1/worker/submit", content=f"@file:{work}/missing.txt".encode(), headers=who).status_code == 404
    assert c.post("/v1/worker/submit", content=f"@file:{work}/answer.txt".encode(), headers=who).status_code == 204
    h.gate.write_text("go")
    assert live_server.wait_run(h.run_id)["result"]["out"] == "from a file"


def test_file_sentinel_refusals_name_only_what_the_worker_sent(live_server: LiveServer, tmp_path: Path) -> None:
    c = live_server.client()
    work = tmp_path / "work"
    (work / "hidden-dir").mkdir(parents=True)
    (work / "hidden-blob").write_bytes(b"\xff\xfe not text")
    (work / "hidden-big").write_text("x" * (2 * 1024 * 1024 + 1))
    (tmp_path / "hidden-outside").mkdir()
    for name, target in (
        ("dir", work / "hidden-dir"),
        ("blob", work / "hidden-blob"),
        ("big", work / "hidden-big"),
        ("away", tmp_path / "hidden-outside"),
        ("loop", work / "loop"),
    ):
        (work / name).symlink_to(target)
    h = hold(live_server, tmp_path, "filer", {"work_dir": str(work)}, meta={"ctx": {"allow_file_submit": True}})
    who = auth(h.env["MSE_WORKER_HANDLE"])
    cases = [
        (f"{tmp_path}/elsewhere.txt", 400, "outside the run's work dir"),
        (f"{work}/away/x.txt", 400, "outside the run's work dir"),
        (f"{work}/dir", 404, "no file at"),
        (f"{work}/blob", 400, "is not UTF-8 text"),
        (f"{work}/big", 413, "is larger than"),
        (f"{work}/loop", 400, "cannot be resolved"),
        (f"{work}/nul\x00byte", 400, "cannot be resolved"),
    ]
    for sent, status, what in cases:
        answer = c.post("/v1/worker/submit", content=f"@file:{sent}".encode(), headers=who)
        assert answer.status_code == status and what in answer.json()["error"], (sent, answer.text)
        # The worker's own text, quoted; nothing the server found (the work dir, a link's target).
        assert repr(sent) in answer.json()["error"], answer.text
        assert "hidden" not in answer.text and (str(work) in sent or str(work) not in answer.text), answer.text
    h.gate.write_text("go")


def test_the_json_result_route_checks_the_types_of_task_id_and_attempt(live_server: LiveServer, held: Held) -> None:
    c = live_server.client()
    who = auth(held.env["MSE_WORKER_HANDLE"])
    step = held.env["MSE_TASK_ID"]
    for extra, status, message in (
        ({"attempt": "1"}, 400, "attempt must be an integer"),
        ({"attempt": True}, 400, "attempt must be an integer"),
        ({"attempt": {"n": 1}}, 400, "attempt must be an integer"),
        ({"task_id": [step]}, 400, "task_id must be the step id"),
        ({"attempt": 2}, 410, "attempt 2 has ended"),
        ({"task_id": "ST-0"}, 403, "not ST-0"),
    ):
        answer = c.post("/v1/worker/result", json={"value": "v", **extra}, headers=who)
        assert answer.status_code == status and message in answer.json()["error"], (extra, answer.text)
    accepted = c.post("/v1/worker/result", json={"value": "v", "task_id": step, "attempt": 1}, headers=who)
    assert accepted.status_code == 204, accepted.text
    held.gate.write_text("go")
    assert live_server.wait_run(held.run_id)["result"]["out"] == "v"


def test_file_sentinel_refused_without_opt_in(live_server: LiveServer, held: Held) -> None:
    r = live_server.client().post(
        "/v1/worker/submit", content=b"@file:/etc/passwd", headers=auth(held.env["MSE_TOKEN"])
    )
    assert r.status_code == 400 and "allow_file_submit" in r.json()["details"]["hint"]


def test_skip_verdict_degradation_and_data_plane(live_server: LiveServer, held: Held) -> None:
    c = live_server.client()
    who = auth(held.env["MSE_WORKER_HANDLE"])
    for name in ("../x", "notes\n.md", "\x1b[2Jnotes"):
        refused = c.post("/v1/worker/artifact", params={"name": name}, content=b"x", headers=who)
        assert refused.status_code == 400 and "plain file name" in refused.json()["error"]
    degraded = {"tool": "search", "error": "offline", "fallback": "cache"}
    assert c.post("/v1/worker/degradation", json=degraded, headers=who).status_code == 204
    partial = {"type": "partial", "chunk": {"kind": "inline", "value": "abc"}}
    emitted = c.post("/v1/data/emit", json={"event": partial}, headers=who)
    out_id = emitted.json()["out_id"]
    assert out_id.startswith("out-")
    assert c.get(f"/v1/data/{out_id}", headers=who).json()["event"] == partial
    named = c.post("/v1/data/report", json={"event": {"type": "progress", "stage": "s", "note": "n"}}, headers=who)
    assert named.status_code == 200
    by_name = c.get("/v1/data/report", params={"token": held.env["MSE_TOKEN"]}).json()
    assert by_name["out_id"] == named.json()["out_id"]
    assert c.post("/v1/data/emit", json={"event": {"type": "bogus"}}, headers=who).status_code == 400
    assert (
        c.post("/v1/worker/submit", params={"verdict": "skip"}, content=b"nothing to do", headers=who).status_code
        == 204
    )
    held.gate.write_text("go")
    run = live_server.wait_run(held.run_id)
    assert run["status"] == "done" and run["step_entries"][0]["status"] == "skipped"
    trace = c.get(f"/v1/runs/{held.run_id}/trace", params={"kind": "worker.degradation"}).json()["events"]
    assert trace[0]["payload"]["tool"] == "search"
    with c.stream("GET", f"/v1/runs/{held.run_id}/events", params={"kind": "data."}) as response:
        kinds = [e["kind"] for e in sse_events(response)]
    assert kinds == ["data.emit", "data.emit", "core.run_finished"]


def test_a_runs_data_records_are_bounded_and_a_refused_one_is_not_kept(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", max_run_data_bytes=4096)
    try:
        c = server.client()
        first, second = hold(server, tmp_path, "first"), hold(server, tmp_path, "second")
        record = {"event": {"type": "progress", "stage": "s", "note": "x" * 900}}
        who = auth(first.env["MSE_WORKER_HANDLE"])
        kept = [c.post("/v1/data/report", json=record, headers=who) for _ in range(4)]
        assert [r.status_code for r in kept] == [200] * 4
        refused = c.post("/v1/data/report", json=record, headers=who)
        assert refused.status_code == 413, refused.text
        details = refused.json()["details"]
        assert details["limit_bytes"] == 4096 and 3600 < details["held_bytes"] <= 4096
        assert "max_run_data_bytes" in details["hint"]
        latest = c.get("/v1/data/report", headers=who).json()
        assert latest["out_id"] == kept[-1].json()["out_id"], "the refused record replaced the last kept one"
        # The bound is per run: another run's worker still publishes.
        other = c.post("/v1/data/report", json=record, headers=auth(second.env["MSE_WORKER_HANDLE"]))
        assert other.status_code == 200
        for h in (first, second):
            h.gate.write_text("go")
            assert server.wait_run(h.run_id)["status"] == "done"
        stored = c.get(f"/v1/runs/{first.run_id}/trace", params={"kind": "data."}).json()["events"]
        assert len([e for e in stored if e["kind"] == "data.emit"]) == 4
    finally:
        server.stop()


def test_worker_routes_are_outside_the_admin_gate(tmp_path: Path) -> None:
    server = start_server(tmp_path, admin_token="adm")
    try:
        r = httpx.post(f"{server.base_url}/v1/worker/submit", content=b"x", headers=auth("wh-00000000"))
        assert r.status_code == 401 and r.json()["error"] == "unknown worker handle"
    finally:
        server.stop()


def test_a_step_run_straight_on_the_engine_is_served_without_a_data_plane(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Code embedding the server may drive a run on its engine without the runs manager: its workers
    still fetch and submit over HTTP; the data plane, which belongs to hosted runs, answers 409."""
    from mlua_swarm.run.launch import run_blueprint

    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    env_file, gate = tmp_path / "direct.env.json", tmp_path / "direct.gate"
    agent = {
        "name": "direct",
        "kind": "subprocess",
        "spec": {"program": sys.executable, "args": [str(script), str(env_file), str(gate)]},
    }
    compiled = live_server.state.compile(one_step(agent))

    async def start() -> asyncio.Task[Any]:
        return asyncio.create_task(run_blueprint(compiled, {"topic": "direct"}, engine=live_server.state.engine))

    task = live_server.call(start)
    deadline = time.monotonic() + 30
    while not env_file.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    handle = json.loads(env_file.read_text())["MSE_WORKER_HANDLE"]
    c = live_server.client()
    prompt = c.get("/v1/worker/prompt", headers=auth(handle))
    assert prompt.status_code == 200 and prompt.json()["prompt"] == "direct"
    emitted = c.post("/v1/data/emit", headers=auth(handle), json={"event": {"type": "progress", "stage": "s"}})
    assert emitted.status_code == 409
    assert c.post("/v1/worker/submit", headers=auth(handle), content=b"over http").status_code == 204
    gate.write_text("go")

    async def finished() -> Any:
        return await task

    result = live_server.call(finished)
    assert result.status == "done" and result.final_ctx["out"] == "over http"
    assert c.get("/v1/worker/prompt", headers=auth(handle)).status_code == 410
