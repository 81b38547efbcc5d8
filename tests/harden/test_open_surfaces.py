"""What a client without any credential reaches on `mse serve`: it must learn no secret and make the
server hold nothing without bound."""

from __future__ import annotations

from pathlib import Path

from tests.serverkit import start_server


def test_the_doctor_read_shows_the_store_without_its_password(tmp_path: Path, pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:topsecret@", 1)
    live = start_server(tmp_path, store=url)
    try:
        shown = live.client().get("/v1/doctor").json()["store"]
    finally:
        live.stop()
    assert "topsecret" not in shown and shown == pg_url.replace("postgres@", "postgres:***@", 1)


def test_joins_are_bounded_in_size_and_number(tmp_path: Path) -> None:
    live = start_server(tmp_path, admin_token="admin-secret", max_operator_sessions=3)
    try:
        http = live.client()  # no admin token: joining needs none, as upstream's
        big = http.post("/v1/operators", json={"capability_manifest": {"x": "a" * 70_000}})
        assert big.status_code == 400 and big.json()["error"].startswith("capability_manifest: the value is larger")
        assert "at most" in big.json()["details"]["hint"]
        long = http.post("/v1/operators", json={"desc": "d" * 5000})
        assert long.status_code == 400 and "5000 characters" in long.json()["error"]
        joined = [
            http.post("/v1/operators", json={"desc": f"op {n}", "capability_manifest": {"n": n}}) for n in range(3)
        ]
        assert [r.status_code for r in joined] == [200, 200, 200]
        full = http.post("/v1/operators", json={})
        assert full.status_code == 503 and "3 operator sessions" in full.json()["error"]
        assert "DELETE /v1/operators/{sid}" in full.json()["details"]["hint"]
        first = joined[0].json()
        gone = http.delete(f"/v1/operators/{first['sid']}", headers={"authorization": f"Bearer {first['token']}"})
        assert gone.status_code == 204
        assert http.post("/v1/operators", json={}).status_code == 200
    finally:
        live.stop()
