"""`mse worker …` on a user's mistakes: missing settings, no server there, a credential the server refuses."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import run_mse
from tests.serverkit import (
    LiveServer,
    live_server,  # noqa: F401
)

CLEAN = {"MSE_HTTP": "", "MSE_WORKER_HANDLE": "", "MSE_TOKEN": "", "MSE_TASK_ID": ""}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_missing_settings_are_named_and_exit_2() -> None:
    fetched = run_mse(["worker", "fetch"], env=CLEAN)
    assert fetched.returncode == 2
    expected = "error[invalid-argument] command line: missing --server or MSE_HTTP and --handle or MSE_WORKER_HANDLE"
    assert fetched.stderr.splitlines()[0] == expected


def test_a_server_that_is_not_there_exits_1_without_a_traceback(tmp_path: Path) -> None:
    for url in (_closed_port_url(), "127.0.0.1:7777"):
        fetched = run_mse(["worker", "fetch", "--server", url, "--handle", "wh-00000000"], env=CLEAN)
        assert fetched.returncode == 1, fetched.stderr
        assert fetched.stderr.startswith(f"error[server-unreachable] {url}: cannot reach the server"), fetched.stderr
        assert "hint:" in fetched.stderr and "Traceback" not in fetched.stderr


def test_a_refused_credential_exits_1_with_the_servers_reason(live_server: LiveServer) -> None:  # noqa: F811
    url = live_server.base_url
    submitted = run_mse(["worker", "submit", "done", "--server", url, "--handle", "wh-00000000"], env=CLEAN)
    assert submitted.returncode == 1
    first = submitted.stderr.splitlines()[0]
    assert first.startswith(f"error[http-401] {url}: POST /v1/worker/submit: "), submitted.stderr
    assert "Traceback" not in submitted.stderr
