"""A 500 from `mse serve` names a fresh reference and nothing of what failed (a type, a path, a query,
a stored value); the server's log holds the exception under the same reference."""

from __future__ import annotations

import http.client
import logging
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import run_mse
from tests.serverkit import ServeProcess, spawn_mse_serve, start_server

SECRET = "sk-live-4242 /srv/private/keys"


def test_an_internal_error_answers_a_reference_and_logs_the_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = start_server(tmp_path)
    try:
        client = live.client()
        body = {"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"x": 1}, "detach": True}
        launched = client.post("/v1/tasks", json=body)
        assert launched.status_code == 202, launched.text
        run_id = launched.json()["run_id"]
        assert live.wait_run(run_id)["status"] == "done"
        # A row edited by hand: reading it fails on a value the client must not see.
        with sqlite3.connect(tmp_path / "server.sqlite3") as conn:
            conn.execute("UPDATE runs SET status = ?", (SECRET,))
        conn.close()

        with caplog.at_level(logging.ERROR, logger="mlua_swarm.server.errors"):
            answers = [client.get(path) for path in ("/v1/runs", f"/v1/runs/{run_id}")]
        refs = []
        for answer in answers:
            assert answer.status_code == 500
            assert set(answer.json()) == {"error"}, answer.text
            message = answer.json()["error"]
            assert "sk-live" not in answer.text and "/srv/private" not in answer.text
            assert "ValueError" not in answer.text and "RunStatus" not in answer.text
            match = re.fullmatch(r"internal error \(ref (E-[0-9a-f]{8})\); the server's log has the details", message)
            assert match, message
            refs.append(match.group(1))
        assert refs[0] != refs[1]
        for ref in refs:
            logged = [r for r in caplog.records if ref in r.getMessage()]
            assert len(logged) == 1
            assert SECRET in logged[0].getMessage() and logged[0].exc_info is not None

        shown = run_mse(["runs", "list", "--server", live.base_url], env={"MSE_HOME": str(tmp_path / "home")})
        assert shown.returncode != 0 and "Traceback" not in shown.stderr
        assert "internal error (ref E-" in shown.stderr and "sk-live" not in shown.stderr
    finally:
        live.stop()


def unreadable_run(served: ServeProcess, home: Path) -> str:
    """A run of `served` whose stored row reading it fails on (a 500)."""
    with served.client() as client:
        launched = client.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"x": 1}})
        assert launched.status_code == 200, launched.text
    with sqlite3.connect(home / "mse.sqlite3") as conn:
        conn.execute("UPDATE runs SET status = ?", (SECRET,))
    conn.close()
    run_id: str = launched.json()["run_id"]
    return run_id


def test_a_500_is_answered_once_logged_once_and_keeps_the_connection(served: ServeProcess, tmp_path: Path) -> None:
    run_id = unreadable_run(served, tmp_path / "home")
    url = urlsplit(served.base_url)
    assert url.hostname is not None and url.port is not None
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("GET", f"/v1/runs/{run_id}")
        failed = connection.getresponse()
        body = failed.read().decode()
        assert failed.status == 500 and not failed.will_close, failed.getheaders()
        ref = re.fullmatch(r'\{"error":"internal error \(ref (E-[0-9a-f]{8})\);[^"]*"\}', body)
        assert ref, body
        socket_used = connection.sock
        # The same HTTP/1.1 connection carries the next request.
        connection.request("GET", "/v1/healthz")
        healthy = connection.getresponse()
        assert healthy.status == 200 and healthy.read() == b"ok"
        assert connection.sock is socket_used
    finally:
        connection.close()

    log = served.whole_log()
    assert log.count("Traceback (most recent call last)") == 1, log
    assert log.count(ref.group(1)) == 1
    # Printed as uvicorn prints its own records, so a log reader sees the level.
    assert f"\nERROR:    internal error (ref {ref.group(1)}) in a route: ValueError" in log
    logged = log[log.index(ref.group(1)) :]
    assert f"ValueError: {SECRET!r} is not a valid RunStatus" in logged[logged.index("Traceback") :]
    assert "Exception in ASGI application" not in log


def test_the_log_level_of_mse_serve_governs_its_own_records(tmp_path: Path) -> None:
    quiet = spawn_mse_serve(
        ["--bind", "127.0.0.1:0", "--log-level", "critical"], env={"MSE_HOME": str(tmp_path / "home")}
    )
    try:
        run_id = unreadable_run(quiet, tmp_path / "home")
        with quiet.client() as client:
            assert client.get(f"/v1/runs/{run_id}").status_code == 500
    finally:
        log = quiet.whole_log()
    assert "internal error" not in log and "Traceback" not in log, log
