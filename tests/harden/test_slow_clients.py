"""Clients that hold a connection without finishing their request (a "slow loris") are cut off."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.server.config import load_config
from tests.serverkit import LiveServer, start_server

WAIT = 20.0
"""How long a test waits for the server to act on a deadline of half a second."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path, request_head_timeout_secs=0.5, request_body_stall_secs=0.5)
    try:
        yield live
    finally:
        live.stop()


def connect(live: LiveServer) -> socket.socket:
    host, port = live.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(WAIT)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_a_connection_that_never_finishes_its_head_is_closed(served: LiveServer) -> None:
    silent, partial = connect(served), connect(served)
    partial.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert read_all(silent) == b"" and read_all(partial) == b""
    kept = connect(served)  # one whole request, then half of the next on the same connection
    kept.sendall(b"GET /v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /v1/healthz HTTP/1.1\r\n")
    answers = read_all(kept)
    assert answers.startswith(b"HTTP/1.1 200") and answers.endswith(b"ok") and answers.count(b"HTTP/1.1") == 1


def test_a_stalled_body_is_a_408_and_the_connection_closes(served: LiveServer) -> None:
    sock = connect(served)
    sock.sendall(
        b"POST /v1/operators HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    head, _, body = read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    answer = json.loads(body)
    assert "stalled" in answer["error"] and "request_body_stall_secs" in answer["details"]["hint"]

    async def sessions() -> int:
        assert served.state.operators is not None
        return len(served.state.operators.sessions)

    assert served.call(sessions) == 0


@pytest.mark.parametrize("key", ["request_head_timeout_secs", "request_body_stall_secs"])
@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "true"])
def test_the_deadlines_are_positive_config_keys(tmp_path: Path, key: str, value: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"{key} = 2.5\n")
    assert getattr(load_config(config), key) == 2.5
    config.write_text(f"{key} = {value}\n")
    with pytest.raises(DiagnosticError) as bad:
        load_config(config)
    assert bad.value.diagnostics[0].code == "invalid-config" and key in bad.value.diagnostics[0].message


def test_a_body_past_the_limit_closes_the_connection_mid_stream(tmp_path: Path) -> None:
    live = start_server(tmp_path, max_body_bytes=1024)
    try:
        sock = connect(live)
        chunk = b"x" * 2048
        sock.sendall(
            b"POST /v1/operators HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )  # and never the last chunk: without the close, the connection would wait for it
        head, _, body = read_all(sock).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
        assert json.loads(body)["details"]["limit_bytes"] == 1024
    finally:
        live.stop()
