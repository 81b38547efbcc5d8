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


def test_rejoining_with_a_wrong_token_or_a_gone_session_says_which(live_server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    joined = live_server.client().post("/v1/operators", json={"desc": "a session to rejoin"}).json()
    env = {"MSE_HOME": str(tmp_path), "MSE_ADMIN_TOKEN": "", "MSE_HTTP": ""}
    base = ["operator", "join", "--server", live_server.base_url]
    wrong = run_mse([*base, "--sid", joined["sid"], "--token", "0" * 32], env=env)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert f"operator session {joined['sid']} refused the socket" in wrong.stderr
    assert "hint: --token is not this session's bearer" in wrong.stderr
    live_server.client(token=joined["token"]).delete(f"/v1/operators/{joined['sid']}").raise_for_status()
    gone = run_mse([*base, "--sid", joined["sid"], "--token", joined["token"]], env=env)
    assert gone.returncode == 2
    assert "hint: the session is gone (it left, or expired 24 h after its last use)" in gone.stderr
    too_long = run_mse([*base, "--desc", "x" * 5000], env=env)
    assert too_long.returncode == 2 and "desc holds 5000 characters" in too_long.stderr
    assert "start a server" not in too_long.stderr
