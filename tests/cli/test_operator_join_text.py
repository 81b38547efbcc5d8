"""`mse operator join` shows what runs send it as text, and says on stderr, with a code, when it cannot join."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.conftest import run_mse
from tests.operator.helpers import HOOKED_SHIP, join_in_terminal, run_result, server_launch
from tests.serverkit import (
    LiveServer,
    live_server,  # noqa: F401
)


def test_a_server_that_is_not_there_is_a_diagnostic_on_stderr(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    joined = run_mse(["operator", "join", "--server", url], env={"MSE_HOME": str(tmp_path), "MSE_ADMIN_TOKEN": ""})
    assert joined.returncode == 2
    assert joined.stdout == ""
    assert joined.stderr.startswith(f"error[operator-join] {url}: cannot join"), joined.stderr
    assert "hint: start a server with `mse serve`, or pass --server URL" in joined.stderr


async def test_brackets_in_a_step_result_are_shown_as_written(live_server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    term, sid = join_in_terminal(live_server, tmp_path)
    try:
        plan = "[v3] to eu-west [/v3]"
        run_id = await server_launch(live_server, HOOKED_SHIP, sid=sid, init_ctx={"plan": plan})
        shown = term.expect(r"agent ship is about to start")
        term.expect(r"approve", start=shown.end())
        term.send("y")
        result = await run_result(live_server, run_id)
        assert result["status"] == "done" and result["result"]["shipped"] == f"shipped {plan}"
        term.expect(r"finished: \"shipped \[v3\] to eu-west \[/v3\]\"", start=shown.end())
        assert term.proc.poll() is None, term.text
    finally:
        term.close()


def test_sid_without_token_is_a_usage_diagnostic(tmp_path: Path) -> None:
    joined = run_mse(["operator", "join", "--sid", "S-0000000000000000"], env={"MSE_HOME": str(tmp_path)})
    assert joined.returncode == 2
    lines = joined.stderr.splitlines()
    assert lines[0] == "error[usage] command line: --sid and --token go together"
    assert lines[1].startswith("  hint: pass both")
