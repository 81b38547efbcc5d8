"""`mse runs ...` through a real child interpreter, with MSE_HOME in a temporary folder."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from mlua_swarm.store import ReplayRow, RunJournal, RunOwner, RunStatus, SqliteStore
from mlua_swarm.store.owner import current_owner

from ..conftest import json_of, run_mse
from .conftest import entry, new_run


def _seed(home: Path) -> list[str]:
    """Three runs: done (2 steps), failed, still running; returns their ids oldest first."""

    async def go() -> list[str]:
        store = SqliteStore(home / "mse.sqlite3")
        ids = []
        for status in (RunStatus.DONE, RunStatus.FAILED, None):
            run = await new_run(store)
            journal = RunJournal(store, run.run_id)
            for ref in ("a", "b"):
                journal.trace("core.step_dispatched", ref, 1, {"agent": "x"})
                await journal.record_step(entry(ref), ReplayRow(ref, "h", ref))
            if status is not None:
                await journal.finish(status, {"final_ctx": {"n": 1}})
            ids.append(run.run_id)
        await store.close()
        return ids

    return asyncio.run(go())


def test_runs_list_show_steps_trace(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path)}
    done, failed, running = _seed(tmp_path)

    listed = run_mse(["runs", "list", "--json"], env=env)
    assert listed.returncode == 0, listed.stderr
    runs = json_of(listed)
    assert [r["run_id"] for r in runs] == [running, failed, done]
    assert [r["status"] for r in runs] == ["running", "failed", "done"]
    assert all({"run_id", "task_id", "status", "created_at"} <= r.keys() for r in runs)
    only_done = json_of(run_mse(["runs", "list", "--json", "--status", "done"], env=env))
    assert [r["run_id"] for r in only_done] == [done]

    show = json_of(run_mse(["runs", "show", done, "--json"], env=env))
    assert show["status"] == "done" and show["result"] == {"final_ctx": {"n": 1}}
    assert show["step_entries"] == 2 and show["replay_rows"] == 2 and show["resumable"] is False

    steps = json_of(run_mse(["runs", "steps", done, "--json"], env=env))
    assert [(s["step_ref"], s["status"], s["attempt"]) for s in steps] == [("a", "passed", 1), ("b", "passed", 1)]

    trace = json_of(run_mse(["runs", "trace", done, "--json", "--kind", "core.step"], env=env))
    assert [(e["kind"], e["step_ref"]) for e in trace] == [
        ("core.step_dispatched", "a"),
        ("core.step_dispatched", "b"),
    ]
    human = run_mse(["runs", "list"], env=env)
    assert human.returncode == 0 and done in human.stdout


def test_runs_cancel_and_prune(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path)}
    done, _failed, running = _seed(tmp_path)

    cancelled = run_mse(["runs", "cancel", running, "--json"], env=env)
    assert cancelled.returncode == 0
    assert json_of(cancelled) == {"run_id": running, "cancelled": True, "status": "cancelled"}
    again = run_mse(["runs", "cancel", done, "--json"], env=env)
    assert again.returncode == 1 and json_of(again)["status"] == "done"

    pruned = run_mse(["runs", "prune", "--keep", "1", "--json"], env=env)
    assert pruned.returncode == 0, pruned.stderr
    assert json_of(pruned) == {"pruned": 2}
    assert [r["run_id"] for r in json_of(run_mse(["runs", "list", "--json"], env=env))] == [running]

    refused = run_mse(["runs", "prune", "--json"], env=env)
    assert refused.returncode == 2 and json_of(refused)["error"]["code"] == "bad_arguments"


def test_unknown_run_and_explicit_store(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path / "home")}
    missing = run_mse(["runs", "show", "R-0000", "--json"], env=env)
    assert missing.returncode == 2
    assert json_of(missing)["error"]["code"] == "run_not_found"
    assert "mse runs list" in missing.stderr

    bad_id = run_mse(["runs", "steps", "X-1", "--json"], env=env)
    assert bad_id.returncode == 2 and "R-" in json_of(bad_id)["error"]["message"]

    elsewhere = tmp_path / "other.sqlite3"
    listed = run_mse(["runs", "list", "--json", "--store", f"sqlite://{elsewhere}"], env=env)
    assert listed.returncode == 0 and json_of(listed) == []
    assert elsewhere.exists()
    assert json_of(run_mse(["runs", "list", "--json", "--store", "memory://"], env=env)) == []
    bad = run_mse(["runs", "list", "--json", "--store", "ftp://x"], env=env)
    assert bad.returncode == 2 and json_of(bad)["error"]["code"] == "bad_store_url"


def test_opening_the_store_marks_runs_of_a_killed_owner_interrupted(tmp_path: Path) -> None:
    env = {"MSE_HOME": str(tmp_path)}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    async def seed() -> str:
        store = SqliteStore(tmp_path / "mse.sqlite3")
        run = await new_run(store)
        me = current_owner()
        store.set_owner(run.run_id, RunOwner(me.host, dead.pid, me.started_at))
        await store.close()
        return run.run_id

    run_id = asyncio.run(seed())
    runs = json_of(run_mse(["runs", "list", "--json"], env=env))
    assert [(r["run_id"], r["status"], r["resumable"]) for r in runs] == [(run_id, "interrupted", True)]
    trace = json_of(run_mse(["runs", "trace", run_id, "--json", "--kind", "core.run_interrupted"], env=env))
    assert f"owner process {dead.pid}" in trace[0]["payload"]["reason"]
