"""`mse mcp --transport streamable-http` as a network attacker or a rebinding web page meets it."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mcp_adapter.conftest import mse_mcp_http, mse_mcp_http_url

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}


def stderr_at_exit(proc: subprocess.Popen[str]) -> str:
    """What the process wrote on stderr until it exited (killed if it is still running after 60 s)."""
    try:
        return proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.fixture
def on_127_0_0_2(tmp_path: Path) -> Iterator[str]:
    """`mse mcp` on a loopback address other than 127.0.0.1; its URL."""
    with mse_mcp_http_url(tmp_path, "--host", "127.0.0.2", "--port", "0") as url:
        yield url


def test_a_rebound_host_name_is_refused_on_any_loopback_address(on_127_0_0_2: str) -> None:
    port = on_127_0_0_2.rsplit(":", 1)[1].split("/")[0]
    headers = {"accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=30) as http:
        rebound = http.post(on_127_0_0_2, json=INITIALIZE, headers={**headers, "host": f"attacker.example:{port}"})
        assert rebound.status_code == 421, rebound.text
        assert http.post(on_127_0_0_2, json=INITIALIZE, headers=headers).status_code == 200


def test_a_non_loopback_host_is_refused(tmp_path: Path) -> None:
    proc = mse_mcp_http(tmp_path, "--host", "0.0.0.0", "--port", "0")
    err = stderr_at_exit(proc)
    assert proc.returncode == 2 and "error[loopback-only]" in err and "no authentication" in err, err
    assert "Traceback" not in err


def test_a_port_in_use_is_a_diagnostic(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = mse_mcp_http(tmp_path, "--port", str(port))
        err = stderr_at_exit(proc)
    assert proc.returncode == 2 and "error[bind-failed]" in err and f"127.0.0.1:{port}" in err, err
    assert "Traceback" not in err
