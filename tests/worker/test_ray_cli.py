"""The `ray` agent kind through the real `mse` command line, in child processes: a run on a local
instance of its own, a durable resume on the session's cluster (`RAY_ADDRESS`), spec errors, an
unreachable cluster, a missing `ray`, and what start-up imports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..conftest import alive, json_of, mse_env, mse_modules, run_mse, start_mse
from .ray_helpers import agent, blueprint, step, wait_for, write_blueprint


def env_for(home: Path, ray_address: str) -> dict[str, str]:
    return {"MSE_HOME": str(home), "RAY_ADDRESS": ray_address}


def test_without_an_address_mse_run_starts_a_local_instance_and_leaves_nothing_running(tmp_path: Path) -> None:
    path = write_blueprint(tmp_path, blueprint(step("echo"), agent("echo"), default_init_ctx={"in": "solo"}))
    env = mse_env({"MSE_HOME": str(tmp_path / "home")})
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", str(path), "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    done = json_of(proc)
    value = done["final_ctx"]["out"]
    assert value["input"] == "solo" and value["role"] == "worker" and value["run_id"] == done["run_id"]
    (entry,) = json_of(run_mse(["runs", "steps", done["run_id"], "--json"], env={"MSE_HOME": str(tmp_path / "home")}))
    assert entry["stats"]["worker_kind"] == "ray" and entry["stats"]["ray_task_id"] == value["ray_task"]
    # the worker and the raylet that started it belonged to the instance the run started: both are gone.
    # Ray tears its processes down after `mse run` exits; under a busy machine's load that took over
    # 30 s once, so the bound is generous (the loop ends as soon as both are gone). One whose parent
    # exited first is re-parented to the nearest subreaper, this test process once an in-process test
    # made it one, and stays a zombie there: ended, which is what counts.
    deadline = time.monotonic() + 120
    while any(alive(pid) for pid in (value["pid"], value["parent"])):
        assert time.monotonic() < deadline, "the local Ray instance outlived mse run"
        time.sleep(0.05)


def test_a_bad_ray_spec_exits_2_with_code_and_hint(tmp_path: Path) -> None:
    bad = agent("echo", num_gpus=-1)
    path = write_blueprint(tmp_path, blueprint(step("echo"), bad))
    for words in (["run", str(path)], ["bp", "lint", str(path)]):
        proc = run_mse(words, env={"MSE_HOME": str(tmp_path / "home")})
        assert proc.returncode == 2, proc.stderr
        assert "error[invalid-agent-spec]" in proc.stderr and "spec.num_gpus must be a number >= 0" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_resumed_run_does_not_call_the_finished_ray_step_again(tmp_path: Path, ray_address: str) -> None:
    (tmp_path / "parking.py").write_text(
        "import asyncio, os, pathlib\n"
        "async def park(inv):\n"
        "    if not pathlib.Path(os.environ['ALLOW_FILE']).exists():\n"
        "        pathlib.Path(os.environ['PARK_FILE']).write_text('parked')\n"
        "        await asyncio.Event().wait()\n"
        "    return 'released'\n"
    )
    log = tmp_path / "ray-calls.log"
    flow = {"kind": "seq", "children": [step("counted", "$.in", "$.doubled"), step("park", "$.doubled", "$.parked")]}
    parked = {"name": "park", "kind": "python", "spec": {"callable": "parking:park"}}
    path = write_blueprint(
        tmp_path, blueprint(flow, agent("counted"), parked, default_init_ctx={"in": {"log": str(log), "n": 21}})
    )
    env = {
        **env_for(tmp_path / "home", ray_address),
        "PARK_FILE": str(tmp_path / "parked"),
        "ALLOW_FILE": str(tmp_path / "allow"),
    }
    child = start_mse(["run", str(path), "--json"], env=env)
    wait_for(tmp_path / "parked")
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert log.read_text() == "ran\n"
    (run,) = json_of(run_mse(["runs", "list", "--json"], env=env))
    assert run["status"] == "interrupted"

    (tmp_path / "allow").write_text("")
    proc = run_mse(["runs", "resume", run["run_id"], "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc)["final_ctx"]["doubled"] == 42 and json_of(proc)["final_ctx"]["parked"] == "released"
    assert log.read_text() == "ran\n"


def test_an_unreachable_cluster_fails_the_step_in_bounded_time(tmp_path: Path) -> None:
    unreachable = agent("echo", address="127.0.0.1:1", connect_timeout_secs=1)
    path = write_blueprint(tmp_path, blueprint(step("echo"), unreachable, default_init_ctx={"in": 1}))
    began = time.monotonic()
    proc = run_mse(["run", str(path), "--json"], env={"MSE_HOME": str(tmp_path / "home")})
    assert time.monotonic() - began < 60
    assert proc.returncode == 1, proc.stderr
    assert "could not connect to Ray at '127.0.0.1:1' within 1 s" in json_of(proc)["error"]["message"]


def test_start_up_and_other_blueprints_never_import_ray(tmp_path: Path) -> None:
    for words in (["--help"], ["runs", "list"]):
        proc, loaded = mse_modules(words, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "ray" not in loaded
    plain = tmp_path / "plain.json"
    plain.write_text(
        json.dumps(
            {
                "id": "plain",
                "flow": step("echo"),
                "agents": [{"name": "echo", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
                "default_init_ctx": {"in": "x"},
            }
        )
    )
    proc, loaded = mse_modules(["run", str(plain), "--json"], tmp_path)
    assert json_of(proc)["status"] == "done"
    assert "ray" not in loaded
    ray_bp = write_blueprint(tmp_path, blueprint(step("echo"), agent("echo")))
    proc, loaded = mse_modules(["bp", "lint", str(ray_bp)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ray" not in loaded and "mlua_swarm.worker.ray" in loaded


WITHOUT_RAY = """
import sys
sys.modules["ray"] = None
from mlua_swarm.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_ray_a_ray_blueprint_lints_and_mse_run_refuses_it(tmp_path: Path) -> None:
    path = write_blueprint(tmp_path, blueprint(step("echo"), agent("echo"), default_init_ctx={"in": 1}))

    def mse(*words: str) -> subprocess.CompletedProcess[str]:
        env = mse_env({"MSE_HOME": str(tmp_path / "home")})
        return subprocess.run([sys.executable, "-c", WITHOUT_RAY, *words], capture_output=True, text=True, env=env)

    assert mse("bp", "lint", str(path)).returncode == 0
    refused = mse("run", str(path))
    assert refused.returncode == 2
    assert "error[kind-unavailable]" in refused.stderr
    assert "agent kind 'ray' needs the ray package: pip install 'mlua-swarm[ray]'" in refused.stderr
