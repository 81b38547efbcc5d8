"""A step that fails before its worker runs (its operator seat vacant, its program missing) is
recorded like every other failed attempt: with the number of the attempt that failed, in the store,
over the API, in `mse runs steps` and on the dashboard."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import run_mse
from tests.serverkit import ServeProcess

PATH = {"op": "path", "at": "$.change"}
OUT = {"op": "path", "at": "$.review"}

VACANT_SEAT = {
    "id": "review",
    "operators": [{"name": "main-ai"}],
    "agents": [
        {
            "name": "reviewer",
            "kind": "operator",
            "spec": {"operator_ref": "main-ai"},
            "runner": {"backend": "ws_operator", "variant": "claude", "tools": []},
        }
    ],
    "flow": {"kind": "step", "ref": "reviewer", "in": PATH, "out": OUT},
}

MISSING_PROGRAM = {
    "id": "missing",
    "agents": [
        {
            "name": "tool",
            "kind": "subprocess",
            "spec": {"program": "/nonexistent/mse-test-program"},
            "retry": {"max_attempts": 2, "on": ["failed"]},
        }
    ],
    "flow": {"kind": "step", "ref": "tool", "in": PATH, "out": OUT},
}


def failed_run(served: ServeProcess, blueprint: dict[str, Any]) -> str:
    body = {"blueprint": {"kind": "inline", "value": blueprint}, "init_ctx": {"change": "typo"}}
    with served.client() as http:
        answer = http.post("/v1/tasks", json=body)  # a sync launch: answered once the run ended
        assert answer.status_code == 400 and answer.json()["details"]["status"] == "failed", answer.text
        run_id: str = answer.json()["details"]["run_id"]
    return run_id


def test_a_step_failed_before_its_worker_ran_records_its_attempt(served: ServeProcess, tmp_path: Path) -> None:
    seat_run = failed_run(served, VACANT_SEAT)
    spawn_run = failed_run(served, MISSING_PROGRAM)
    for run_id, ref, attempt, error in (
        (seat_run, "reviewer", 1, "operator seat 'main-ai'"),
        (spawn_run, "tool", 2, "spawn failed"),
    ):
        with served.client() as http:
            steps = http.get(f"/v1/runs/{run_id}/steps").json()["steps"]
            page = http.get(f"/ui/api/runs/{run_id}").json()["steps"]
        assert [(s["step_ref"], s["status"], s["attempt"]) for s in steps] == [(ref, "failed", attempt)], steps
        assert error in steps[0]["error"]
        assert [(s["step_ref"], s["attempt"]) for s in page] == [(ref, attempt)]

        shown = run_mse(["runs", "steps", run_id, "--server", served.base_url])
        assert shown.returncode == 0, shown.stderr
        assert re.search(rf"^{ref}\s+{attempt}\s+failed\s", shown.stdout, re.M), shown.stdout

    with sqlite3.connect(tmp_path / "home" / "mse.sqlite3") as db:
        rows = db.execute(
            "SELECT r.id, h.attempt FROM history AS h JOIN runs AS r ON h.key >> 32 = r.num ORDER BY r.id"
        ).fetchall()
    db.close()
    assert sorted(rows) == sorted([(seat_run, 1), (spawn_run, 2)])
