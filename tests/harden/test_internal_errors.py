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
from tests.serverkit import ServeProcess, start_server

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


def test_a_500_is_answered_once_logged_once_and_keeps_the_connection(served: ServeProcess, tmp_path: Path) -> None:
    with served.client() as client:
        launched = client.post("/v1/tasks", json={"blueprint": {"kind": "id", "id": "main"}, "init_ctx": {"x": 1}})
        assert launched.status_code == 200, launched.text
    run_id = launched.json()["run_id"]
    with sqlite3.connect(tmp_path / "home" / "mse.sqlite3") as conn:
        conn.execute("UPDATE runs SET status = ?", (SECRET,))
    conn.close()

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
    logged = log[log.index(ref.group(1)) :]
    assert f"ValueError: {SECRET!r} is not a valid RunStatus" in logged[logged.index("Traceback") :]
    assert "Exception in ASGI application" not in log
