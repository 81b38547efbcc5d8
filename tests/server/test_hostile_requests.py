"""Malformed requests a hostile client sends to a real server: each is a JSON diagnostic, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serverkit import LiveServer

BP: dict[str, Any] = {
    "id": "echo",
    "flow": {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.y"}},
    "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}
BIG = 2**62


def launch(**fields: Any) -> dict[str, Any]:
    return {"blueprint": {"kind": "inline", "value": BP}, "init_ctx": {}, "detach": True, **fields}


@pytest.mark.parametrize("key", ["base_dir", "project_root", "work_dir"])
def test_a_path_with_a_nul_character_is_refused_before_any_run(live_server: LiveServer, key: str) -> None:
    http = live_server.client()
    refused = http.post("/v1/tasks", json=launch(**{key: "/tmp/a\x00b"}))
    assert refused.status_code == 400 and key in refused.json()["error"], refused.text
    assert http.get("/v1/runs").json()["runs"] == []


def test_a_rekick_with_a_nul_path_is_refused(live_server: LiveServer) -> None:
    http = live_server.client()
    task = http.post("/v1/tasks", json=launch(detach=False)).json()["task_id"]
    refused = http.post(f"/v1/tasks/{task}/runs", json={"task_input_override": {"work_dir": "\x00"}})
    assert refused.status_code == 400 and "work_dir" in refused.json()["error"], refused.text


@pytest.mark.parametrize("metadata", [[1], "text", 7])
def test_blueprint_metadata_that_is_not_an_object_is_a_diagnostic(live_server: LiveServer, metadata: Any) -> None:
    answer = live_server.client().post(
        "/v1/tasks", json={"blueprint": {"kind": "inline", "value": {**BP, "metadata": metadata}}}
    )
    assert answer.status_code == 400, answer.text
    assert any("metadata" in d["span"]["json_path"] for d in answer.json()["details"]["diagnostics"])


def test_the_largest_limit_and_offset_together_list_runs(live_server: LiveServer) -> None:
    answer = live_server.client().get("/v1/runs", params={"limit": BIG, "offset": BIG})
    assert answer.status_code == 200 and answer.json() == {"runs": []}
