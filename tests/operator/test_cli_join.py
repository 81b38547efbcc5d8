"""`mse operator join` driven through a real pseudo-terminal answers a spawn."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

from tests.serverkit import LiveServer

from .helpers import HOOKED_SHIP, join_in_terminal, operator_blueprint, run_result, server_launch


async def test_a_person_answers_a_spawn_in_the_terminal(live_server: LiveServer, tmp_path: Path) -> None:
    term, sid = join_in_terminal(live_server, tmp_path, "--desc", "pty")
    try:
        raw = operator_blueprint("review")
        raw["agents"][0]["verdict"] = {"values": ["PASS", "BLOCKED"]}
        run_id = await server_launch(live_server, raw, sid=sid)
        shown = term.expect(r"verdict choices\s+PASS, BLOCKED")
        term.expect(r"do review", start=0)
        term.expect(r"action", start=shown.end())
        term.send("p")
        asked = term.expect(r"verdict \[PASS/BLOCKED\]", start=shown.end())
        term.send("BLOCKED")
        term.expect(r"answered", start=asked.end())
        result = await run_result(live_server, run_id)
        assert result["status"] == "done" and result["result"]["review"] == "BLOCKED"
    finally:
        term.close()


async def test_a_hook_before_shows_the_prompt_in_the_terminal_and_approving_runs_the_step(
    live_server: LiveServer, tmp_path: Path
) -> None:
    term, sid = join_in_terminal(live_server, tmp_path, "--desc", "pty")
    try:
        run_id = await server_launch(live_server, HOOKED_SHIP, sid=sid, init_ctx={"plan": "[v3] to eu-west"})
        shown = term.expect(r"agent ship is about to start")
        term.expect(r"\[v3\] to eu-west", start=shown.start())
        term.expect(rf'"run_id":"{run_id}"', start=shown.start())
        term.expect(r"approve", start=shown.end())
        term.send("y")
        result = await run_result(live_server, run_id)
        assert result["status"] == "done" and result["result"]["shipped"] == "shipped [v3] to eu-west"
    finally:
        term.close()


async def test_ctrl_c_or_ctrl_d_at_a_prompt_leaves_and_a_rejoin_gets_the_spawn_again(
    live_server: LiveServer, tmp_path: Path
) -> None:
    term, sid = join_in_terminal(live_server, tmp_path, "--desc", "pty")
    try:
        token = re.search(r"--token ([0-9a-f]+)", term.text)
        assert token, term.text
        run_id = await server_launch(live_server, operator_blueprint("draft"), sid=sid)
        term.expect(r"action \[v/f/h\]")
        os.killpg(term.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends its foreground command
        term.expect("left the terminal; the session stays on the server")
        assert await asyncio.to_thread(term.proc.wait, 30) == 0
    finally:
        term.close()
    rejoin = ("--sid", sid, "--token", token.group(1))
    term, _ = join_in_terminal(live_server, tmp_path, *rejoin)
    try:
        shown = term.expect(r"action \[v/f/h\]")
        os.write(term.master, b"\x04")  # Ctrl-D: the prompt's input ends
        term.expect("left the terminal; the session stays on the server", start=shown.end())
        assert await asyncio.to_thread(term.proc.wait, 30) == 0
        assert "Traceback" not in term.text
    finally:
        term.close()
    term, _ = join_in_terminal(live_server, tmp_path, *rejoin)
    try:
        shown = term.expect(r"do draft")
        term.expect(r"action \[v/f/h\]", start=shown.end())
        term.send("v")
        asked = term.expect(r"value \(JSON or text\)", start=shown.end())
        term.send("first draft")
        term.expect(r"answered", start=asked.end())
        result = await run_result(live_server, run_id)
        assert result["status"] == "done" and result["result"]["draft"] == "first draft"
    finally:
        term.close()
