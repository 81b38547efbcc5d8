"""Plausible mistakes with `mse mcp` and `mse bp build`: diagnostics with a code, a place and a hint."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import run_mse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_mcp_on_a_port_in_use_is_a_diagnostic(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        served = run_mse(
            ["mcp", "--transport", "streamable-http", "--port", str(port)], env={"MSE_HOME": str(tmp_path)}, input=""
        )
    assert served.returncode == 2
    expected = f"error[bind-failed] command line: cannot listen on 127.0.0.1:{port}:"
    assert served.stderr.startswith(expected), served.stderr
    assert "hint: pick another --port" in served.stderr and "Traceback" not in served.stderr


def test_bp_build_of_a_json_blueprint_says_it_takes_a_lua_script(tmp_path: Path) -> None:
    built = run_mse(["bp", "build", str(EXAMPLES / "pipeline.json")], env={"MSE_HOME": str(tmp_path)})
    assert built.returncode == 2
    lines = built.stderr.splitlines()
    assert lines[0] == f"error[unsupported-file] {EXAMPLES / 'pipeline.json'}: bp build runs a .bp.lua script"
    assert (
        lines[1]
        == "  hint: a JSON or YAML Blueprint needs no build: check it with `mse bp lint`, run it with `mse run`"
    )
    assert built.stdout == ""
