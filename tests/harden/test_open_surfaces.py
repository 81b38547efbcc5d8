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
