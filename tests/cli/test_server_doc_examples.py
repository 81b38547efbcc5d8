"""The curl walk-through of docs/server.md ("With curl"), step by step against `mse serve` started in
examples/ as the doc says (a registered Blueprint's python agents import from the server's folder)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverkit import ServeProcess, spawn_mse_serve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def served_in_examples(tmp_path: Path) -> Iterator[ServeProcess]:
    served = spawn_mse_serve(["--bind", "127.0.0.1:0"], env={"MSE_HOME": str(tmp_path)}, cwd=EXAMPLES)
    try:
        yield served
    finally:
        served.terminate()


def test_register_launch_and_follow_as_the_doc_shows(served_in_examples: ServeProcess) -> None:
    c = served_in_examples.client()
    body = (EXAMPLES / "pipeline.json").read_bytes()
    headers = {"content-type": "application/json"}

    first = c.post("/v1/blueprints/article-pipeline", content=body, headers=headers)
    assert first.status_code == 201 and first.json()["seeded"] is True, first.text
    again = c.post("/v1/blueprints/article-pipeline", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["seeded"] is False
    assert again.json()["version"] == first.json()["version"]
    other_name = c.post("/v1/blueprints/hello", content=body, headers=headers)
    assert other_name.status_code == 400 and "differs from the path" in other_name.json()["error"]

    launch = {"blueprint": {"kind": "id", "id": "article-pipeline"}, "init_ctx": {"topic": "sqlite"}}
    waited = c.post("/v1/tasks", json=launch)
    assert waited.status_code == 200, waited.text
    assert waited.json()["final_ctx"]["article"] == "WHY SQLITE / HOW SQLITE / WHAT NEXT FOR SQLITE"
    detached = c.post("/v1/tasks", json={**launch, "detach": True})
    assert detached.status_code == 202
    run_id = detached.json()["run_id"]
    with c.stream("GET", f"/v1/runs/{run_id}/events") as events:
        kinds = [json.loads(line[5:])["kind"] for line in events.iter_lines() if line.startswith("data:")]
    assert kinds[0] == "core.run_started" and kinds[-1] == "core.run_finished"
    assert c.get(f"/v1/runs/{run_id}").json()["status"] == "done"

    unknown = c.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "hello"}, "init_ctx": {}})
    assert unknown.status_code == 400
    assert unknown.json()["details"]["hint"] == "register it first: POST /v1/blueprints/hello"
