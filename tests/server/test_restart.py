"""A server killed mid-run (SIGKILL: no shutdown code runs) restarts, and the run resumes over HTTP."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

from tests.server.blueprints import inline, step
from tests.server.sse import sse_events
from tests.serverkit import spawn_mse_serve


def _script(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def test_sigkilled_server_restarts_and_resume_skips_the_finished_step(tmp_path: Path) -> None:
    runs_log = tmp_path / "runs.log"
    pid_file = tmp_path / "slow.pid"
    first = _script(
        tmp_path / "first.py",
        f"""
        import json, sys
        topic = sys.stdin.read()
        open({str(runs_log)!r}, "a").write("first\\n")
        print(json.dumps({{"first": topic}}))
        """,
    )
    slow = _script(
        tmp_path / "slow.py",
        f"""
        import os, time
        from mlua_swarm import child
        child.read_input()
        open({str(runs_log)!r}, "a").write("slow\\n")
        if not os.path.exists({str(pid_file)!r}):
            open({str(pid_file)!r} + ".part", "w").write(str(os.getpid()))
            os.replace({str(pid_file)!r} + ".part", {str(pid_file)!r})
            child.progress("holding", "until killed")
            time.sleep(600)
        child.final({{"slow": "done"}})
        """,
    )
    bp = {
        "id": "two",
        "flow": {"kind": "seq", "children": [step("first", "$.topic", "$.first"), step("slow", "$.first", "$.slow")]},
        "agents": [
            {"name": "first", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(first)]}},
            {
                "name": "slow",
                "kind": "subprocess",
                "spec": {"program": sys.executable, "args": [str(slow)], "stream_mode": "ndjson_lines"},
            },
        ],
    }
    env = {"MSE_HOME": str(tmp_path / "home")}
    served = spawn_mse_serve(["--bind", "127.0.0.1:0", "--durability", "sync"], env=env)
    try:
        with served.client() as c:
            r = c.post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {"topic": "t"}, "detach": True})
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            with c.stream("GET", f"/v1/runs/{run_id}/events") as stream:
                for event in sse_events(stream):
                    if event["kind"] == "output.progress":  # the slow child is up and has written its pid
                        break
        assert served.terminate(signal.SIGKILL) == -signal.SIGKILL
    finally:
        if served.proc.poll() is None:
            served.terminate(signal.SIGKILL)
    # the orphaned child outlives its server: stop it as an operator would
    os.kill(int(pid_file.read_text()), signal.SIGKILL)

    again = spawn_mse_serve(["--bind", "127.0.0.1:0"], env=env)
    try:
        with again.client() as c:
            assert c.get(f"/v1/runs/{run_id}").json()["status"] == "interrupted"
            resumed = c.post(f"/v1/runs/{run_id}/resume")
            assert resumed.status_code == 202, resumed.text
            assert resumed.json()["replayed_steps"] == 1
            with c.stream("GET", f"/v1/runs/{run_id}/events") as stream:
                kinds = [e["kind"] for e in sse_events(stream)]
            assert kinds[-1] == "core.run_finished"
            run = c.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "done", run
            assert run["result"]["slow"] == {"slow": "done"} and run["result"]["first"] == {"first": "t"}
        assert runs_log.read_text().splitlines() == ["first", "slow", "slow"]
    finally:
        assert again.terminate() in (0, -signal.SIGTERM)
