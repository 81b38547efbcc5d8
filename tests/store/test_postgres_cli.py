"""The PostgreSQL store through the real command line: a durable `mse run` killed with SIGKILL and
resumed, two engine hosts resuming one run at once, and `mse serve` hosts sharing a database."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

from tests.server.blueprints import inline, step
from tests.serverkit import spawn_mse_serve

from ..conftest import json_of, run_mse, start_mse, wait_for_file
from ..run.test_durable_cli import log_lines, reference_ctx, setup


def _interrupted_run(tmp_path: Path, pg_url: str) -> tuple[str, dict[str, str], Path]:
    """A durable `mse run` on PostgreSQL, SIGKILLed while its 11th step runs: its run id (interrupted)."""
    bp, env = setup(tmp_path)
    child = start_mse(["run", str(bp), "--json", "--store", pg_url], env=env)
    wait_for_file(tmp_path / "parked", child)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(10)]
    runs = json_of(run_mse(["runs", "list", "--json", "--store", pg_url], env=env))
    assert [r["status"] for r in runs] == ["interrupted"]
    return runs[0]["run_id"], env, bp


def test_sigkill_mid_run_then_resume_reruns_no_finished_step(tmp_path: Path, pg_url: str) -> None:
    run_id, env, bp = _interrupted_run(tmp_path, pg_url)
    expected = reference_ctx(tmp_path, bp, env)
    (tmp_path / "allow").write_text("")
    proc = run_mse(["runs", "resume", run_id, "--json", "--store", pg_url], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc) == {"status": "done", "run_id": run_id, "final_ctx": expected}
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(30)]
    shown = json_of(run_mse(["runs", "show", run_id, "--json", "--store", pg_url], env=env))
    assert shown["status"] == "done"
    # No SQLite file was written beside: everything went to the database.
    assert not (Path(env["MSE_HOME"]) / "mse.sqlite3").exists()


def test_two_engine_hosts_resuming_one_run_exactly_one_runs_it(tmp_path: Path, pg_url: str) -> None:
    run_id, env, _ = _interrupted_run(tmp_path, pg_url)
    (tmp_path / "allow").write_text("")
    hosts = [start_mse(["runs", "resume", run_id, "--json", "--store", pg_url], env=env) for _ in range(2)]
    outcomes = [(h.wait(120), *h.communicate()) for h in hosts]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, _, err in outcomes if code == 2)
    assert "Traceback" not in loser and "hint:" in loser
    # The finished steps were replayed by the winner and nothing ran twice.
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(30)]
    shown = json_of(run_mse(["runs", "show", run_id, "--json", "--store", pg_url], env=env))
    assert shown["status"] == "done"


def test_a_bad_or_unreachable_postgresql_store_exits_2_with_a_hint(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path / "home")}
    for url, says in (
        ("postgresql://localhost:notaport/db", "bad_store_url"),
        ("postgresql://mse:pw@127.0.0.1:1/mse", "store_unusable"),
    ):
        proc = run_mse(["runs", "list", "--json", "--store", url], env=env)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        error = json_of(proc)["error"]
        assert error["code"] == says and error["hint"]
        assert "pw@" not in proc.stdout + proc.stderr


def test_mse_serve_on_postgresql_serves_a_run_another_host_then_reads(tmp_path: Path, pg_url: str) -> None:
    script = tmp_path / "echo.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            print(json.dumps({"echo": sys.stdin.read()}))
            """
        )
    )
    bp = {
        "id": "echo",
        "flow": {"kind": "seq", "children": [step("echo", "$.topic", "$.echo")]},
        "agents": [{"name": "echo", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}}],
    }
    hosts = [
        spawn_mse_serve(["--bind", "127.0.0.1:0", "--store", pg_url], env={"MSE_HOME": str(tmp_path / f"h{i}")})
        for i in range(2)
    ]
    try:
        with hosts[0].client() as first, hosts[1].client() as second:
            r = first.post("/v1/tasks", json={"blueprint": inline(bp), "init_ctx": {"topic": "t"}})
            assert r.status_code in (200, 201), r.text
            run_id = r.json()["run_id"]
            run = second.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "done", run
            assert run["result"]["echo"] == {"echo": "t"}
            steps = second.get(f"/v1/runs/{run_id}/steps").json()
            assert [s["step_ref"] for s in steps["steps"]] == ["echo"]
    finally:
        for host in hosts:
            assert host.terminate() in (0, -signal.SIGTERM)
    listed = json_of(run_mse(["runs", "list", "--json", "--store", pg_url], env={"MSE_HOME": str(tmp_path)}))
    assert [r["run_id"] for r in listed] == [run_id]
