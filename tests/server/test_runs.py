"""Tasks and runs over HTTP against a real uvicorn: launch sync/detached, read back, re-kick, cancel, delete."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.server.blueprints import chain, child, inline
from tests.serverkit import LiveServer


def test_sync_launch_inline_returns_the_final_ctx(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline(chain()), "init_ctx": {"topic": "t"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "done" and body["final_ctx"]["c"]["echoed"]
    assert body["ttl_source"] == "server_default" and body["run_id"].startswith("R-")
    run = c.get(f"/v1/runs/{body['run_id']}").json()
    assert run["status"] == "done" and [s["step_ref"] for s in run["step_entries"]] == ["a", "b", "c"]
    task = c.get(f"/v1/tasks/{body['task_id']}").json()
    assert task["task"]["status"] == "done" and [r["run_id"] for r in task["runs"]] == [body["run_id"]]


def test_launch_by_registered_id_and_selectors(live_server: LiveServer) -> None:
    c = live_server.client()
    v1 = c.post("/v1/blueprints/chain3", json=chain()).json()["version"]
    c.post("/v1/blueprints/chain3", json={**chain(), "metadata": {"default_run_ttl_secs": 99}})
    latest = c.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "chain3"}, "init_ctx": {"topic": "x"}})
    assert latest.status_code == 200 and latest.json()["ttl_source"] == "bp_metadata"
    assert latest.json()["effective_ttl_secs"] == 99
    fixed = {"kind": "id", "id": "chain3", "version": {"kind": "fixed", "value": v1}}
    pinned = c.post("/v1/tasks", json={"blueprint": fixed, "init_ctx": {"topic": "x"}, "ttl_secs": 5})
    assert pinned.json()["bound_version"] == v1 and pinned.json()["ttl_source"] == "request_body"
    unknown = c.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "ghost"}, "init_ctx": {}})
    assert unknown.status_code == 400 and "ghost" in unknown.json()["error"]
    c.delete("/v1/blueprints/chain3")
    archived = c.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "chain3"}, "init_ctx": {}})
    assert archived.status_code == 409


def test_launch_refuses_bad_requests(live_server: LiveServer) -> None:
    c = live_server.client()
    bp = inline(chain())
    assert c.post("/v1/tasks", json={"blueprint": bp, "init_ctx": {}, "timeout_secs": 0}).status_code == 400
    both = {"blueprint": bp, "init_ctx": {}, "timeout_secs": 5, "detach": True}
    assert c.post("/v1/tasks", json=both).status_code == 400
    assert c.post("/v1/tasks", json={"blueprint": {"kind": "zip"}}).status_code == 400
    bad = c.post("/v1/tasks", json={"blueprint": inline({"id": "x", "flow": {"kind": "step"}}), "init_ctx": {}})
    assert bad.status_code == 400 and bad.json()["details"]["diagnostics"]


def test_strict_check_policy_without_a_work_dir_is_a_client_error_and_records_nothing(
    live_server: LiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = live_server.client()
    strict = {"blueprint": inline(chain()), "init_ctx": {"topic": "t"}, "check_policy": "strict"}
    with caplog.at_level(logging.WARNING):
        for detach in (False, True):
            r = c.post("/v1/tasks", json={**strict, "detach": detach})
            assert r.status_code == 400, r.text
            (diagnostic,) = r.json()["details"]["diagnostics"]
            assert diagnostic["kind"] == "projection-root-missing" and diagnostic["help"]
            assert "work dir" in r.json()["error"]
    assert c.get("/v1/runs").json()["runs"] == [] and c.get("/v1/tasks").json() == []
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR] == []
    placed = c.post("/v1/tasks", json={**strict, "work_dir": str(tmp_path)})
    assert placed.status_code == 200 and placed.json()["status"] == "done"


def test_failed_flow_answers_400_with_details(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline(chain()), "init_ctx": {"other": 1}})
    assert r.status_code == 400
    details = r.json()["details"]
    assert details["status"] == "failed" and "partial_ctx" in details


def test_detached_launch_list_trace_steps_content_and_rekick(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline(chain()), "init_ctx": {"topic": "d"}, "detach": True})
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["final_ctx"] is None
    run_id, task_id = r.json()["run_id"], r.json()["task_id"]
    assert c.get(f"/v1/runs/{run_id}").status_code == 200
    assert live_server.wait_run(run_id)["status"] == "done"

    listed = c.get("/v1/runs", params={"task_id": task_id}).json()["runs"]
    assert [x["run_id"] for x in listed] == [run_id]
    assert c.get("/v1/runs", params={"status": "done", "limit": 1}).json()["runs"][0]["status"] == "done"
    assert c.get("/v1/runs", params={"status": "bogus"}).status_code == 400
    steps = c.get(f"/v1/runs/{run_id}/steps").json()["steps"]
    assert [s["status"] for s in steps] == ["passed"] * 3

    events = c.get(f"/v1/runs/{run_id}/trace").json()["events"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "core.run_started" and kinds[-1] == "core.run_finished"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    tail = c.get(f"/v1/runs/{run_id}/trace", params={"latest": 2}).json()["events"]
    assert [e["seq"] for e in tail] == [e["seq"] for e in events[-2:]]
    only_b = c.get(f"/v1/runs/{run_id}/trace", params={"kind": "step.", "step": "b"}).json()["events"]
    assert {e["kind"] for e in only_b} == {"step.started", "step.finished"}
    assert c.get("/v1/runs/R-unknown/trace").json()["events"] == []

    summary = c.get(f"/v1/tasks/{task_id}/runs/latest/steps").json()
    assert [s["name"] for s in summary["steps"]] == ["a", "b", "c"]
    one = c.get(f"/v1/tasks/{task_id}/runs/{run_id}/steps/a", params={"path": "$.echoed"}).json()
    assert one["preview"] == '"d"'
    content = c.get(f"/v1/tasks/{task_id}/runs/latest/steps/a/content")
    assert content.status_code == 200 and content.json()["echoed"] == "d"
    etag = content.headers["etag"]
    assert etag.startswith('"sha256:')
    again = c.get(f"/v1/tasks/{task_id}/runs/latest/steps/a/content", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert c.get(f"/v1/tasks/{task_id}/runs/latest/steps/zz").status_code == 404

    kicked = c.post(f"/v1/tasks/{task_id}/runs", json={"init_ctx_override": {"topic": "again"}})
    assert kicked.status_code == 201 and kicked.json()["status"] == "done"
    assert kicked.json()["final_ctx"]["a"]["echoed"] == "again"
    task = c.get(f"/v1/tasks/{task_id}").json()
    assert len(task["runs"]) == 2 and task["task"]["input_ctx"] == {"topic": "d"}
    assert any(t["task_id"] == task_id for t in c.get("/v1/tasks").json())

    assert c.delete(f"/v1/runs/{run_id}").status_code == 204
    assert c.get(f"/v1/runs/{run_id}").status_code == 404
    assert c.delete(f"/v1/runs/{run_id}").status_code == 404


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_over_http_kills_the_running_child(live_server: LiveServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "hold.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            sys.stdin.read()
            open({str(pid_file)!r} + ".part", "w").write(str(os.getpid()))
            os.replace({str(pid_file)!r} + ".part", {str(pid_file)!r})
            time.sleep(600)
            """
        )
    )
    c = live_server.client()
    r = c.post(
        "/v1/tasks", json={"blueprint": inline(child("hold", script)), "init_ctx": {"topic": "x"}, "detach": True}
    )
    run_id = r.json()["run_id"]
    with c.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if "step.started" in line:
                break
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    assert c.post(f"/v1/runs/{run_id}/cancel").status_code == 204
    run = live_server.wait_run(run_id)
    assert run["status"] == "cancelled"
    assert not _pid_alive(pid)
    steps = c.get(f"/v1/runs/{run_id}/steps").json()["steps"]
    assert [(s["step_ref"], s["status"]) for s in steps] == [("work", "cancelled")]
    assert c.post("/v1/runs/R-nothere/cancel").status_code == 404


def test_a_race_losers_cancelled_entry_does_not_hide_the_winners_step(live_server: LiveServer, tmp_path: Path) -> None:
    started = tmp_path / "slow.started"
    script = tmp_path / "lane.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, pathlib, sys, time
            item = sys.stdin.read()
            if item == "slow":
                pathlib.Path({str(started)!r}).write_text("")
                time.sleep(600)
            while not pathlib.Path({str(started)!r}).exists():
                time.sleep(0.01)
            print(json.dumps({{"won": item}}))
            """
        )
    )
    lane = {"kind": "step", "ref": "work", "in": {"op": "path", "at": "$.item"}, "out": {"op": "path", "at": "$.got"}}
    flow = {
        "kind": "fanout",
        "items": {"op": "lit", "value": ["slow", "quick"]},
        "bind": {"op": "path", "at": "$.item"},
        "body": lane,
        "join": "race",
        "collect": {"op": "path", "at": "$.got"},
        "out": {"op": "path", "at": "$.out"},
    }
    agent = {"name": "work", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}
    c = live_server.client()
    r = c.post("/v1/tasks", json={"blueprint": inline({"id": "race", "flow": flow, "agents": [agent]}), "init_ctx": {}})
    assert r.status_code == 200, r.text
    assert r.json()["final_ctx"] == {"out": {"won": "quick"}}
    run_id, task_id = r.json()["run_id"], r.json()["task_id"]
    entries = c.get(f"/v1/runs/{run_id}/steps").json()["steps"]
    assert [(s["step_ref"], s["status"]) for s in entries] == [("work", "passed"), ("work", "cancelled")]
    # The step's summary and content are the winner's, not the loser's cancellation.
    (summary,) = c.get(f"/v1/tasks/{task_id}/runs/{run_id}/steps").json()["steps"]
    assert summary["name"] == "work" and summary["status"] == "passed"
    assert c.get(f"/v1/tasks/{task_id}/runs/{run_id}/steps/work/content").json() == {"won": "quick"}


def test_task_metadata_reaches_the_steps_and_survives_a_rekick(live_server: LiveServer) -> None:
    c = live_server.client()
    bp = {
        "id": "meta",
        "flow": {"kind": "step", "ref": "read", "in": {"op": "lit", "value": None}, "out": {"op": "path", "at": "$.m"}},
        "agents": [{"name": "read", "kind": "lua", "spec": {"source": 'return { value = _TASK_METADATA or "none" }'}}],
    }
    metadata = {"ticket": "T-42", "labels": ["urgent"]}
    r = c.post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {}, "task_metadata": metadata})
    assert r.status_code == 200, r.text
    assert r.json()["final_ctx"]["m"] == metadata and r.json()["info"]["task_metadata"] == metadata
    again = c.post(f"/v1/tasks/{r.json()['task_id']}/runs", json={})
    assert again.status_code in (200, 201), again.text
    assert c.get(f"/v1/runs/{again.json()['run_id']}").json()["result_ref"]["m"] == metadata
    bare = c.post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {}})
    assert bare.status_code == 200 and bare.json()["final_ctx"]["m"] == "none"
