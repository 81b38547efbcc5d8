"""Durable runs through the real CLI: SIGKILL mid-run, resume, rerun-from — finished steps never re-run."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from ..conftest import json_of, run_mse, start_mse, wait_for_file

AGENTS = """
import asyncio, os, pathlib

def _log(name, value):
    with open(os.environ["STEP_LOG"], "a") as fh:
        fh.write(f"{name}:{value}\\n")

async def prep(inv):
    _log("prep", inv.input)
    return {"base": 100}

async def count(inv):
    n = inv.input
    if n == 10 and not pathlib.Path(os.environ["ALLOW_FILE"]).exists():
        pathlib.Path(os.environ["PARK_FILE"]).write_text("parked")
        await asyncio.Event().wait()
    _log("count", n)
    return n + 1
"""

FLOW = {
    "kind": "seq",
    "children": [
        {"kind": "step", "ref": "prep", "in": {"op": "lit", "value": "go"}, "out": {"op": "path", "at": "$.prep"}},
        {"kind": "assign", "at": {"op": "path", "at": "$.n"}, "value": {"op": "lit", "value": 0}},
        {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.i"},
            "max": 30,
            "cond": {"op": "lit", "value": True},
            "body": {
                "kind": "step",
                "ref": "count",
                "in": {"op": "path", "at": "$.n"},
                "out": {"op": "path", "at": "$.n"},
            },
        },
    ],
}


def setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "durable_agents.py").write_text(AGENTS)
    bp = tmp_path / "bp.json"
    agents = [
        {"name": name, "kind": "python", "spec": {"callable": f"durable_agents:{name}"}} for name in ("prep", "count")
    ]
    bp.write_text(json.dumps({"id": "durable", "flow": FLOW, "agents": agents}))
    env = {
        "MSE_HOME": str(tmp_path / "home"),
        "STEP_LOG": str(tmp_path / "steps.log"),
        "PARK_FILE": str(tmp_path / "parked"),
        "ALLOW_FILE": str(tmp_path / "allow"),
    }
    return bp, env


def log_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "steps.log"
    return path.read_text().splitlines() if path.exists() else []


def reference_ctx(tmp_path: Path, bp: Path, env: dict[str, str]) -> Any:
    """The final ctx of the same flow run without interruption (in memory, its own log)."""
    ref_env = {**env, "STEP_LOG": str(tmp_path / "reference.log"), "ALLOW_FILE": str(bp)}
    proc = run_mse(["run", str(bp), "--json", "--ephemeral"], env=ref_env)
    assert proc.returncode == 0, proc.stderr
    return json_of(proc)["final_ctx"]


def test_sigkill_mid_run_then_resume_runs_every_finished_step_exactly_once(tmp_path: Path) -> None:
    bp, env = setup(tmp_path)
    expected = reference_ctx(tmp_path, bp, env)
    child = start_mse(["run", str(bp), "--json"], env=env)
    wait_for_file(tmp_path / "parked", child)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(10)]

    runs = json_of(run_mse(["runs", "list", "--json"], env=env))
    assert len(runs) == 1 and runs[0]["status"] == "interrupted"
    run_id = runs[0]["run_id"]

    (tmp_path / "allow").write_text("")
    proc = run_mse(["runs", "resume", run_id, "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json_of(proc)
    assert doc == {"status": "done", "run_id": run_id, "final_ctx": expected}
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(30)]
    assert json_of(run_mse(["runs", "show", run_id, "--json"], env=env))["status"] == "done"


def test_rerun_from_a_step_replays_what_came_before_it(tmp_path: Path) -> None:
    bp, env = setup(tmp_path)
    (tmp_path / "allow").write_text("")
    first = run_mse(["run", str(bp), "--json"], env=env)
    assert first.returncode == 0, first.stderr
    done = json_of(first)
    assert log_lines(tmp_path) == ["prep:go"] + [f"count:{n}" for n in range(30)]

    proc = run_mse(["runs", "rerun-from", done["run_id"], "count", "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json_of(proc) == done
    lines = log_lines(tmp_path)
    assert lines.count("prep:go") == 1
    assert lines[31:] == [f"count:{n}" for n in range(30)]


def test_resume_refuses_a_run_that_is_not_interrupted(tmp_path: Path) -> None:
    bp, env = setup(tmp_path)
    (tmp_path / "allow").write_text("")
    done = json_of(run_mse(["run", str(bp), "--json"], env=env))
    proc = run_mse(["runs", "resume", done["run_id"], "--json"], env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "hint:" in proc.stderr
    proc = run_mse(["runs", "resume", "not-a-run", "--json"], env=env)
    assert proc.returncode == 2 and "R-" in proc.stderr


def test_a_childs_stderr_tail_is_kept_on_its_step_entry(tmp_path: Path) -> None:
    bp = tmp_path / "bp.json"
    agent = {
        "name": "noisy",
        "kind": "subprocess",
        "spec": {"program": "sh", "args": ["-c", "cat >/dev/null; echo warming up >&2; echo '{\"ok\": 1}'"]},
    }
    bp.write_text(
        json.dumps(
            {
                "id": "noisy",
                "agents": [agent],
                "flow": {
                    "kind": "step",
                    "ref": "noisy",
                    "in": {"op": "lit", "value": "x"},
                    "out": {"op": "path", "at": "$.out"},
                },
            }
        )
    )
    env = {"MSE_HOME": str(tmp_path / "home")}
    done = json_of(run_mse(["run", str(bp), "--json"], env=env))
    assert done["final_ctx"] == {"out": {"ok": 1}}
    (entry,) = json_of(run_mse(["runs", "steps", done["run_id"], "--json"], env=env))
    assert entry["stderr_tail"] == "warming up\n"
    assert entry["stats"]["exit_code"] == 0 and "stderr_tail" not in entry["stats"]


def test_mse_runs_cancel_stops_a_live_run_in_another_process(tmp_path: Path) -> None:
    bp, env = setup(tmp_path)
    child = start_mse(["run", str(bp), "--json"], env=env)
    wait_for_file(tmp_path / "parked", child)
    (run,) = json_of(run_mse(["runs", "list", "--json"], env=env))
    assert run["status"] == "running"
    proc = run_mse(["runs", "cancel", run["run_id"]], env=env)
    assert proc.returncode == 0, proc.stderr
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert json.loads(out)["status"] == "cancelled"
    assert json_of(run_mse(["runs", "show", run["run_id"], "--json"], env=env))["status"] == "cancelled"
    # The step that was running ends like any other: a progress line and an entry in the history.
    assert "⊘ count cancelled" in err
    entries = json_of(run_mse(["runs", "steps", run["run_id"], "--json"], env=env))
    assert [(e["step_ref"], e["status"]) for e in entries][-2:] == [("count", "passed"), ("count", "cancelled")]
    assert entries[-1]["error"] == "cancelled" and entries[-1]["attempt"] == 1
