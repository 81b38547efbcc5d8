"""`mse bp new agent NAME`: the scaffold builds, lints strict, and runs its verdict loop on a loopback model."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import json_of, run_mse
from .fakes import OpenAIServer, Reply


def test_the_agent_template_runs_its_verdict_loop(tmp_path: Path, openai_server: OpenAIServer) -> None:
    made = run_mse(["bp", "new", "agent", "notes", "-o", "notes.bp.lua"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lint = run_mse(["bp", "lint", "notes.bp.lua", "--strict"], cwd=tmp_path)
    assert lint.returncode == 0, lint.stderr

    openai_server.play(
        Reply(text="FAIL\n"),
        Reply(text="Release 2.1: fixed the login bug (sessions expired early); faster search (new index)."),
        Reply(text=" PASS\n"),
    )
    ran = run_mse(["run", "notes.bp.lua", "--json", "--ephemeral"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    final = json_of(ran)["final_ctx"]
    assert final["accepted"] is True and final["review"] == "PASS"
    assert final["draft"].startswith("Release 2.1:")
    reviewer, reviser, again = openai_server.requests
    assert reviewer["model"] == reviser["model"] == "gpt-4o-mini"
    assert reviewer["messages"][1]["content"] == "Release notes: fixed the login bug; faster search."
    assert "PASS" in reviewer["messages"][0]["content"] and "revised notes" in reviser["messages"][0]["content"]
    assert again["messages"][1]["content"] == final["draft"]


def test_the_agent_template_takes_stage_names(tmp_path: Path) -> None:
    made = run_mse(["bp", "new", "agent", "x", "--stages", "judge,editor"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (tmp_path / "x.bp.lua").write_text(made.stdout)
    built = run_mse(["bp", "build", "x.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    agents = json.loads(built.stdout)["agents"]
    assert [(a["name"], a["kind"]) for a in agents] == [("judge", "agent_block"), ("editor", "agent_block")]
