"""`mse run --server URL` and `mse runs … --server URL` against a real server, through the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import textwrap
from pathlib import Path

from tests.conftest import run_mse, start_mse, wait_for_file
from tests.server.blueprints import chain, child
from tests.serverkit import LiveServer, start_server


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def _remote_run(bp: Path, server: LiveServer, *extra: str) -> list[str]:
    return ["run", str(bp), "--init", '{"topic": "x"}', "--json", "--server", server.base_url, *extra]


def _no_http(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a test command: no server or token from the surroundings, plus `env`."""
    return {"MSE_HTTP": "", "MSE_ADMIN_TOKEN": "", **(env or {})}


def test_run_on_a_server_shows_progress_and_prints_the_same_json(live_server: LiveServer, tmp_path: Path) -> None:
    bp = _write(tmp_path / "chain.json", chain())
    ran = run_mse(
        ["run", str(bp), "--init", '{"topic": "t"}', "--json", "--server", live_server.base_url], env=_no_http()
    )
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["status"] == "done" and document["final_ctx"]["c"]["echoed"]
    assert set(document) == {"status", "run_id", "final_ctx"}
    for name in "abc":
        assert f"✓ {name} passed" in ran.stderr
    assert live_server.base_url in ran.stderr and "■ done: 3 passed" in ran.stderr
    record = live_server.client().get(f"/v1/runs/{document['run_id']}").json()
    assert record["status"] == "done" and record["result"] == document["final_ctx"]


def test_mse_http_selects_the_server_and_local_overrides_it(live_server: LiveServer, tmp_path: Path) -> None:
    bp = _write(tmp_path / "chain.json", chain())
    env = _no_http({"MSE_HTTP": live_server.base_url, "MSE_HOME": str(tmp_path / "home")})
    remote = run_mse(["run", str(bp), "--init", '{"topic": "r"}', "--json"], env=env)
    assert remote.returncode == 0, remote.stderr
    remote_id = json.loads(remote.stdout)["run_id"]
    local = run_mse(["run", str(bp), "--init", '{"topic": "l"}', "--json", "--local"], env=env)
    assert local.returncode == 0, local.stderr
    local_id = json.loads(local.stdout)["run_id"]
    c = live_server.client()
    assert c.get(f"/v1/runs/{remote_id}").status_code == 200
    assert c.get(f"/v1/runs/{local_id}").status_code == 404


def test_a_failing_run_on_the_server_exits_1_with_its_error(live_server: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.stdin.read()\nprint('no good')\nsys.exit(3)\n")
    bp = _write(tmp_path / "fail.json", child("fail", script))
    ran = run_mse(
        ["run", str(bp), "--init", '{"topic": "x"}', "--json", "--server", live_server.base_url], env=_no_http()
    )
    assert ran.returncode == 1, ran.stderr
    document = json.loads(ran.stdout)
    assert document["status"] == "failed" and document["error"]["failed_step"] == "work"
    assert "✗ work" in ran.stderr


def test_ctrl_c_cancels_the_run_on_the_server_and_kills_its_child(live_server: LiveServer, tmp_path: Path) -> None:
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
    bp = _write(tmp_path / "hold.json", child("hold", script))
    proc = start_mse(
        ["run", str(bp), "--init", '{"topic": "x"}', "--json", "--server", live_server.base_url], env=_no_http()
    )
    try:
        wait_for_file(pid_file, proc)
        pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    document = json.loads(out)
    assert document["status"] == "cancelled"
    assert live_server.client().get(f"/v1/runs/{document['run_id']}").json()["status"] == "cancelled"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"the child {pid} outlived the cancelled run")


def test_runs_commands_over_http(live_server: LiveServer, tmp_path: Path) -> None:
    url = live_server.base_url
    c = live_server.client()
    done = c.post("/v1/tasks", json={"blueprint": {"kind": "inline", "value": chain()}, "init_ctx": {"topic": "q"}})
    run_id = done.json()["run_id"]

    listed = run_mse(["runs", "list", "--server", url, "--json"], env=_no_http())
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert "result" not in json.loads(listed.stdout)[0]
    table = run_mse(["runs", "list", "--server", url, "--status", "done"], env=_no_http())
    assert run_id in table.stdout and "done" in table.stdout

    shown = json.loads(run_mse(["runs", "show", run_id, "--server", url, "--json"], env=_no_http()).stdout)
    assert shown["status"] == "done" and shown["step_entries"] == 3 and shown["task"]["task_id"] == shown["task_id"]
    steps = json.loads(run_mse(["runs", "steps", run_id, "--server", url, "--json"], env=_no_http()).stdout)
    assert [s["step_ref"] for s in steps] == ["a", "b", "c"]
    trace = run_mse(["runs", "trace", run_id, "--server", url, "--json", "--step", "b"], env=_no_http())
    assert {e["step_ref"] for e in json.loads(trace.stdout)} == {"b"}

    rerun = run_mse(["runs", "rerun-from", run_id, "b", "--server", url, "--json"], env=_no_http())
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["final_ctx"]["a"]["echoed"] == "q"
    assert "b passed" in rerun.stderr and "replayed" in rerun.stderr

    again = run_mse(["runs", "cancel", run_id, "--server", url], env=_no_http())
    assert again.returncode == 1 and "already done" in again.stdout
    pruned = run_mse(["runs", "prune", "--keep", "1", "--server", url], env=_no_http())
    assert pruned.returncode == 2 and "error[not-over-http] command line: prune works on a store" in pruned.stderr
    missing = run_mse(["runs", "show", "R-0000000000000000", "--server", url], env=_no_http())
    assert missing.returncode == 2 and "not-found" in missing.stderr and "Traceback" not in missing.stderr


def test_bad_input_and_unreachable_server_are_diagnostics(live_server: LiveServer, tmp_path: Path) -> None:
    bp = _write(tmp_path / "bad.json", {"id": "bad", "flow": {"kind": "step", "ref": "ghost"}, "agents": []})
    ran = run_mse(["run", str(bp), "--server", live_server.base_url], env=_no_http())
    assert ran.returncode == 2 and "error[" in ran.stderr and "Traceback" not in ran.stderr
    good = _write(tmp_path / "chain.json", chain())
    mixed = run_mse(["run", str(good), "--server", live_server.base_url, "--store", "memory://"], env=_no_http())
    assert mixed.returncode == 2 and "command line: --store applies to a local run" in mixed.stderr
    assert live_server.client().get("/v1/runs").json()["runs"] == []
    down = run_mse(["run", str(good), "--server", "http://127.0.0.1:9", "--json"], env=_no_http())
    assert down.returncode == 2 and "server-unreachable" in down.stderr
    assert json.loads(down.stdout)["status"] == "invalid"


def test_admin_token_is_sent_when_the_server_wants_one(tmp_path: Path) -> None:
    server = start_server(tmp_path, admin_token="s3cret")
    try:
        bp = _write(tmp_path / "chain.json", chain())
        refused = run_mse(_remote_run(bp, server), env=_no_http())
        assert refused.returncode == 2 and "unauthorized" in refused.stderr
        accepted = run_mse(_remote_run(bp, server), env=_no_http({"MSE_ADMIN_TOKEN": "s3cret"}))
        assert accepted.returncode == 0, accepted.stderr
        flag = run_mse(_remote_run(bp, server, "--admin-token", "s3cret"), env=_no_http())
        assert flag.returncode == 0, flag.stderr
    finally:
        server.stop()


def test_references_resolve_from_the_blueprint_folder_without_projecting(
    live_server: LiveServer, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "myagents.py").write_text("async def greet(inv):\n    return f'hello, {inv.input}'\n")
    bp = {
        "id": "hello",
        "flow": {
            "kind": "step",
            "ref": "greet",
            "in": {"op": "path", "at": "$.topic"},
            "out": {"op": "path", "at": "$.g"},
        },
        "agents": [{"name": "greet", "kind": "python", "spec": {"callable": "myagents:greet"}}],
    }
    path = _write(folder / "hello.json", bp)
    ran = run_mse(_remote_run(path, live_server), env=_no_http(), cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["final_ctx"]["g"] == "hello, x"
    # Nothing of ours lands in the folder (Python's own bytecode cache may, where it is enabled).
    assert sorted(p.name for p in folder.iterdir() if p.name != "__pycache__") == ["hello.json", "myagents.py"]


def _held_launch(folder: Path, module: str) -> tuple[Path, Path, Path]:
    """A Blueprint whose agent module, imported by the server (in this process) while it answers the
    launch, holds that answer until the test writes to a FIFO (after it has written a marker); its
    step then waits to be cancelled. Returns (blueprint, marker, fifo). `module` names the agent's
    module, which the server imports once per name."""
    folder.mkdir()
    marker, fifo = folder / "importing", folder / "go"
    os.mkfifo(fifo)
    (folder / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            import asyncio, os
            if os.getpid() == {os.getpid()}:  # the server (this test's process), not the client's own check
                open({str(marker)!r}, "w").close()
                with open({str(fifo)!r}) as go:
                    go.read()

            async def hold(inv):
                await asyncio.sleep(600)
            """
        )
    )
    bp = {
        "id": "held",
        "flow": {
            "kind": "step",
            "ref": "hold",
            "in": {"op": "path", "at": "$.topic"},
            "out": {"op": "path", "at": "$.h"},
        },
        "agents": [{"name": "hold", "kind": "python", "spec": {"callable": f"{module}:hold"}}],
    }
    return _write(folder / "held.json", bp), marker, fifo


def test_ctrl_c_while_the_launch_is_answered_cancels_the_run_once_the_server_names_it(
    live_server: LiveServer, tmp_path: Path
) -> None:
    bp, marker, fifo = _held_launch(tmp_path / "project", "held_once")
    proc = start_mse(_remote_run(bp, live_server), env=_no_http())
    try:
        wait_for_file(marker, proc)
        proc.send_signal(signal.SIGINT)  # the launch request is in flight: the server is importing the agent
        fifo.write_text("go")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    document = json.loads(out)
    assert document["status"] == "cancelled"
    assert live_server.client().get(f"/v1/runs/{document['run_id']}").json()["status"] == "cancelled"


def test_a_second_ctrl_c_before_the_launch_is_answered_stops_waiting_and_says_where_the_run_is(
    live_server: LiveServer, tmp_path: Path
) -> None:
    bp, marker, fifo = _held_launch(tmp_path / "project", "held_twice")
    proc = start_mse(_remote_run(bp, live_server), env=_no_http())
    try:
        wait_for_file(marker, proc)
        while proc.poll() is None:  # the user presses Ctrl-C again until the command gives up
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        fifo.write_text("go")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "may have started there" in err and f"mse runs list --server {live_server.base_url}" in err
    assert out == ""
    c = live_server.client()
    for run in c.get("/v1/runs").json()["runs"]:  # the launch went through once released: stop it
        c.post(f"/v1/runs/{run['run_id']}/cancel")


def test_ctrl_c_of_a_command_waiting_on_a_server_exits_130_without_a_traceback(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = start_mse(["runs", "list", "--server", url], env=_no_http())
        try:
            conn, _ = silent.accept()
            with conn:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert (out, err.strip()) == ("", "mse: interrupted")
