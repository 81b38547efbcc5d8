"""`mse runs rerun-from` shows the new pass of the run once: locally, and over HTTP where the run's
event stream also holds its earlier pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import run_mse
from tests.server.blueprints import chain
from tests.serverkit import (
    LiveServer,
    live_server,  # noqa: F401
)

NO_SERVER = {"MSE_HTTP": "", "MSE_ADMIN_TOKEN": ""}


def _assert_new_pass_only(stderr: str, title: str) -> None:
    lines = stderr.splitlines()
    assert lines[0] == title
    assert [line.split()[:3] for line in lines[1:-1]] == [
        ["↺", "a", "replayed"],
        ["✓", "b", "passed"],
        ["✓", "c", "passed"],
    ]
    assert re.fullmatch(r"■ done: 2 passed, 1 replayed in \d+\.\d\ds", lines[-1])


def test_rerun_from_locally_counts_the_replayed_step_once(tmp_path: Path) -> None:
    bp = tmp_path / "chain.json"
    bp.write_text(json.dumps(chain()))
    env = {**NO_SERVER, "MSE_HOME": str(tmp_path / "home")}
    first = run_mse(["run", str(bp), "--init", '{"topic": "q"}', "--json"], env=env)
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]

    rerun = run_mse(["runs", "rerun-from", run_id, "b", "--json"], env=env)

    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["final_ctx"]["c"]["echoed"]
    _assert_new_pass_only(rerun.stderr, f"▶ chain3 · {run_id}")


def test_rerun_from_over_http_shows_only_the_new_pass(live_server: LiveServer) -> None:  # noqa: F811
    c = live_server.client()
    first = c.post("/v1/tasks", json={"blueprint": {"kind": "inline", "value": chain()}, "init_ctx": {"topic": "q"}})
    run_id = first.json()["run_id"]
    assert live_server.wait_run(run_id)["status"] == "done"

    rerun = run_mse(["runs", "rerun-from", run_id, "b", "--server", live_server.base_url, "--json"], env=NO_SERVER)

    assert rerun.returncode == 0, rerun.stderr
    document = json.loads(rerun.stdout)
    assert document["status"] == "done" and document["final_ctx"]["c"]["echoed"]
    _assert_new_pass_only(rerun.stderr, f"▶ rerun from b · {run_id} @ {live_server.base_url}")
