"""Malformed requests a hostile client sends to a real server: each is a JSON diagnostic, never a 500."""

from __future__ import annotations

import re
from typing import Any

import httpx
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


def dashboard_client(live: LiveServer) -> tuple[httpx.Client, dict[str, str]]:
    """A client holding the dashboard's CSRF cookie, and the header carrying its token."""
    http = live.client()
    page = http.get("/operator")
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert found is not None, page.text[:500]
    return http, {"x-csrf-token": found.group(1)}


@pytest.mark.parametrize("path", ["/ui/api/runs", "/v1/runs", "/v1/tasks"])
@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=%D9%A3", "limit=" + "9" * 5000, "limit=-1"])
def test_a_runs_query_with_a_bad_number_is_a_400(live_server: LiveServer, path: str, query: str) -> None:
    answer = live_server.client().get(f"{path}?{query}")
    assert answer.status_code == 400 and "limit" in answer.json()["error"], answer.text


@pytest.mark.parametrize("query", ["from=%C2%B2", "after=%C2%B2", "after=99999999999999999999999", "from=1e3"])
def test_a_dashboard_live_query_with_a_bad_number_is_a_400(live_server: LiveServer, query: str) -> None:
    http = live_server.client()
    run = http.post("/v1/tasks", json=launch(detach=False)).json()["run_id"]
    answer = http.get(f"/ui/api/runs/{run}/live?{query}")
    assert answer.status_code == 400 and "query parameter" in answer.json()["error"], answer.text
    assert http.get(f"/ui/api/runs/{run}/live?from=0&after=0").status_code == 200


@pytest.mark.parametrize("path", ["/ui/api/operator/join", "/ui/api/operator/acquire", "/ui/runs/R-1/rerun-from"])
@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"desc": NaN}'])
def test_a_dashboard_action_with_a_body_that_is_not_a_json_object_is_a_400(
    live_server: LiveServer, path: str, body: bytes
) -> None:
    http, csrf = dashboard_client(live_server)
    assert http.post("/ui/api/operator/join", json={"desc": "console"}, headers=csrf).status_code == 200
    answer = http.post(path, content=body, headers={**csrf, "content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"], answer.text


@pytest.mark.parametrize("init_ctx", ["[" * 100_000, '{"x": NaN}', '{"x": 1e999}'])
def test_a_launch_form_whose_init_ctx_is_not_json_data_says_so(live_server: LiveServer, init_ctx: str) -> None:
    http, csrf = dashboard_client(live_server)
    assert http.post("/v1/blueprints/echo", json=BP).status_code == 201
    answer = http.post(
        "/ui/blueprints/echo/launch", data={"csrf": csrf["x-csrf-token"], "init_ctx": init_ctx}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert "init+ctx+is+not+JSON" in answer.headers["location"]
    assert http.get("/v1/runs").json()["runs"] == []


def test_a_run_page_draws_a_ctx_holding_an_integer_past_64_bits(live_server: LiveServer) -> None:
    http = live_server.client()
    big = 2**70
    run = http.post("/v1/tasks", json=launch(detach=False, init_ctx={"big": big})).json()["run_id"]
    page = http.get(f"/runs/{run}")
    assert page.status_code == 200 and str(big) in page.text, page.text[:300]
