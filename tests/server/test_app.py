"""The app's frame against a real uvicorn: health, JSON errors, Blueprint routes, body limit, admin token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.server.app import collect_routes
from mlua_swarm.server.config import MAX_BODY_BYTES, load_config
from tests.serverkit import LiveServer, spawn_mse_serve, start_server

BP = {
    "id": "echo",
    "flow": {
        "kind": "step",
        "ref": "identity",
        "in": {"op": "path", "at": "$"},
        "out": {"op": "path", "at": "$.result"},
    },
    "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}


def test_health_status_doctor(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.get("/v1/healthz")
    assert r.status_code == 200 and r.text == "ok"
    status = c.get("/v1/status").json()
    assert status["running_runs"] == 0 and status["attached_operators"] == 0
    doctor = c.get("/v1/doctor").json()
    assert doctor["seed_blueprint_id"] == "main" and "main" in doctor["registered_blueprint_ids"]


def test_unknown_route_and_wrong_method_answer_json(live_server: LiveServer) -> None:
    c = live_server.client()
    r = c.get("/v1/nope")
    assert r.status_code == 404 and "no route" in r.json()["error"]
    r = c.put("/v1/healthz")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]
    r = c.post("/v1/blueprints", json={})
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert r.json()["error"] == "method POST not allowed on /v1/blueprints (it answers GET, HEAD)"
    assert r.json()["details"]["allow"] == ["GET", "HEAD"]


def test_blueprint_register_versions_history_archive(live_server: LiveServer) -> None:
    c = live_server.client()
    first = c.post("/v1/blueprints/echo", json=BP)
    assert first.status_code == 201 and first.json()["seeded"] is True
    again = c.post("/v1/blueprints/echo", json=BP)
    assert again.status_code == 200 and again.json()["seeded"] is False
    assert again.json()["version"] == first.json()["version"]
    changed = c.post("/v1/blueprints/echo", json={**BP, "default_init_ctx": {"v": 2}})
    assert changed.status_code == 201 and changed.json()["version"] != first.json()["version"]
    head = c.get("/v1/blueprints/echo/head").json()
    assert head["version"] == changed.json()["version"] and head["blueprint"]["default_init_ctx"] == {"v": 2}
    pinned = c.get("/v1/blueprints/echo/head", params={"version": first.json()["version"][:12]}).json()
    assert pinned["version"] == first.json()["version"]
    history = c.get("/v1/blueprints/echo/history").json()
    assert history["count"] == 2 and history["entries"][0]["hash"] == changed.json()["version"]
    assert {b["id"] for b in c.get("/v1/blueprints").json()["blueprints"]} >= {"echo", "main"}

    assert c.delete("/v1/blueprints/echo").status_code == 204
    assert "echo" not in {b["id"] for b in c.get("/v1/blueprints").json()["blueprints"]}
    refused = c.post("/v1/blueprints/echo", json=BP)
    assert refused.status_code == 409 and "unarchive" in refused.json()["details"]["hint"]
    assert c.post("/v1/blueprints/echo/unarchive").status_code == 204
    assert c.post("/v1/blueprints/echo", json=BP).status_code == 200


def test_blueprint_errors_are_json(live_server: LiveServer) -> None:
    c = live_server.client()
    assert c.get("/v1/blueprints/ghost/head").status_code == 404
    assert c.delete("/v1/blueprints/ghost").json()["error"].startswith("no blueprint")
    mismatch = c.post("/v1/blueprints/other", json=BP)
    assert mismatch.status_code == 400 and "differs" in mismatch.json()["error"]
    bad = c.post("/v1/blueprints/bad", json={"id": "bad", "flow": {"kind": "nope"}})
    assert bad.status_code == 400 and bad.json()["details"]["diagnostics"]
    not_json = c.post("/v1/blueprints/bad", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]


def test_body_over_the_limit_is_413_declared_or_streamed(live_server: LiveServer) -> None:
    c = live_server.client()
    big = b"x" * (MAX_BODY_BYTES + 1)
    r = c.post("/v1/blueprints/big", content=big)
    assert r.status_code == 413 and r.json()["details"]["limit_bytes"] == MAX_BODY_BYTES

    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)

    r = c.post("/v1/blueprints/big", content=chunks())
    assert r.status_code == 413
    exact = c.post("/v1/blueprints/big", content=b" " * MAX_BODY_BYTES)
    assert exact.status_code == 400  # within the limit: read, then refused as not JSON


def test_non_loopback_bind_needs_an_admin_token(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as err:
        load_config(tmp_path / "none.toml", {"bind": "0.0.0.0:7777"})
    assert err.value.diagnostics[0].code == "admin-token-required"
    assert load_config(
        tmp_path / "none.toml", {"bind": "0.0.0.0:7777", "admin_token": "s3cret-long-enough!"}
    ).admin_token


def test_mse_serve_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="admin-token-required"):
        spawn_mse_serve(["--bind", "0.0.0.0:0"], env={"MSE_HOME": str(tmp_path)})


def test_config_file_unknown_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('bind = "127.0.0.1:9999"\nbogus = 1\n')
    with pytest.raises(DiagnosticError) as err:
        load_config(path)
    assert err.value.diagnostics[0].code == "unknown-config-key"
    path.write_text('bind = "127.0.0.1:9999"\n')
    assert load_config(path, {"bind": None}).port == 9999
    assert load_config(path, {"bind": "127.0.0.1:1234"}).port == 1234


def test_admin_token_gates_mutating_routes_only(tmp_path: Path) -> None:
    server = start_server(tmp_path, admin_token="s3cret")
    try:
        anon = server.client()
        assert anon.get("/v1/blueprints").status_code == 200
        refused = anon.post("/v1/blueprints/echo", json=BP)
        assert refused.status_code == 401 and "admin token" in refused.json()["error"]
        assert server.client(token="wrong").post("/v1/blueprints/echo", json=BP).status_code == 401
        assert server.client(token="s3cret").post("/v1/blueprints/echo", json=BP).status_code == 201
        # worker routes carry their own credential: the admin gate lets them through to their own check
        assert "admin token" not in anon.post("/v1/worker/submit", content=b"x").text
    finally:
        server.stop()


def test_serve_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    served = spawn_mse_serve(["--bind", "127.0.0.1:0"], env={"MSE_HOME": str(tmp_path)})
    with httpx.Client(base_url=served.base_url) as c:
        assert c.get("/v1/healthz").text == "ok"
    code = served.terminate()
    assert code in (0, -15), "".join(served.stderr_lines)


def test_openapi_describes_every_api_route(live_server: LiveServer) -> None:
    doc = live_server.client().get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": live_server.base_url}]
    served = {
        (method.lower(), route.path)
        for route in collect_routes(live_server.state)
        for method in (getattr(route, "methods", None) or {"GET"}) - {"HEAD"}
        if route.path.startswith("/v1/")
    }
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served and served <= described
    launch = doc["paths"]["/v1/tasks"]["post"]
    assert "blueprint" in launch["requestBody"]["content"]["application/json"]["schema"]["required"]
    submit = doc["paths"]["/v1/worker/submit"]["post"]
    assert submit["security"] == [{"worker": []}] and {"401", "403", "410"} <= set(submit["responses"])
    trace = doc["paths"]["/v1/runs/{id}/trace"]["get"]
    assert {p["name"] for p in trace["parameters"]} >= {"id", "after", "latest", "kind", "step", "attempt"}
    assert all(op["summary"] for ops in doc["paths"].values() for op in ops.values())
