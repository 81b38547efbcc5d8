"""The operator samples of examples/operators lint clean and run on a real server with the rule bot.

The automated operator is examples/operator_rule.py itself, started as a child process: it joins,
the run is launched pinned to its session, and it answers every spawn as the sub-agent would.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from mlua_swarm.blueprint.loader import expand_refs, load_blueprint_source
from tests.conftest import run_mse
from tests.serverkit import SRC, LiveServer

from .helpers import run_result, server_launch

ROOT = SRC.parent
SAMPLES = ROOT / "examples" / "operators"
RULE_BOT = ROOT / "examples" / "operator_rule.py"
SAMPLE_FILES = sorted(p.name for p in SAMPLES.iterdir() if p.suffix == ".json" or p.name.endswith(".bp.lua"))


def test_every_upstream_operator_sample_shape_has_an_example() -> None:
    assert SAMPLE_FILES == [
        "after-run-audit.json",
        "agent-md.bp.lua",
        "fanout.bp.lua",
        "override.json",
        "pipeline.bp.lua",
        "review-loop.json",
        "skip-on.bp.lua",
    ]


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_each_sample_lints_clean(name: str) -> None:
    linted = run_mse(["bp", "lint", str(SAMPLES / name)])
    assert linted.returncode == 0, linted.stderr
    assert "bp lint: OK" in linted.stdout + linted.stderr
    assert "warn" not in (linted.stdout + linted.stderr).lower()


@asynccontextmanager
async def rule_bot(live: LiveServer) -> AsyncIterator[str]:
    """examples/operator_rule.py joined to `live`; yields its session id."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RULE_BOT),
        "--server",
        live.base_url,
        "--desc",
        "rule bot",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        joined = re.search(r"joined as (S-[0-9a-f]+)", line)
        assert joined, line
        yield joined.group(1)
    finally:
        proc.terminate()
        await proc.wait()


def blueprint(name: str) -> Any:
    raw, base = load_blueprint_source(SAMPLES / name)
    return expand_refs(raw, base)


async def run_sample(live: LiveServer, name: str, init_ctx: Any) -> dict[str, Any]:
    async with rule_bot(live) as sid:
        run_id = await server_launch(live, blueprint(name), sid=sid, desc="rule bot", init_ctx=init_ctx)
        record = await run_result(live, run_id)
    assert record["status"] == "done", record["result"]
    final: dict[str, Any] = record["result"]
    return final


def handled(agent: str, value: Any) -> dict[str, Any]:
    return {"agent": agent, "handled_by": "rule bot", "input": value}


async def test_review_loop_lands_a_change_the_gate_passes(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "review-loop.json", {"d": {"topic": "flaky login"}, "verdict": "BLOCKED"})
    assert final["verdict"] == "PASS" and final["round"] == 1
    assert final["survey"] == handled("survey", "flaky login")
    assert final["landed"] == handled("land", final["change"]) and "escalated" not in final


async def test_review_loop_escalates_after_three_blocked_rounds(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "review-loop.json", {"d": {"topic": "TODO login"}, "verdict": "BLOCKED"})
    assert final["verdict"] == "BLOCKED" and final["round"] == 3
    assert final["escalated"]["agent"] == "escalate" and "landed" not in final


async def test_override_ships_what_the_gate_passes(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "override.json", {"d": {"change": "fix a typo"}})
    assert (final["verdict"], final["decision"]) == ("PASS", "PASS")
    assert final["shipped"] == handled("ship", "fix a typo") and "approval" not in final


async def test_override_asks_the_approver_when_the_gate_blocks(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "override.json", {"d": {"change": "TODO rewrite auth"}})
    assert (final["verdict"], final["approval"], final["decision"], final["held"]) == (
        "BLOCKED",
        "DENY",
        "DENY",
        "HELD",
    )
    assert "shipped" not in final


async def test_pipeline_releases_a_passing_critique(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "pipeline.bp.lua", {"d": {"draft": "durable runs"}})
    assert final["critique"]["parts"] == {"verdict": "PASS"}
    assert final["release"] == handled("releaser", final["draft"]) and final["released"] is True


async def test_pipeline_stops_at_a_critique_that_stays_blocked(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "pipeline.bp.lua", {"d": {"draft": "TODO durable runs"}})
    assert final["critique"]["parts"] == {"verdict": "BLOCKED"} and final["stopped_at"] == "critique"
    assert final["revise"]["agent"] == "reviser" and "release" not in final


async def test_fanout_inspects_every_target_then_tallies(live_server: LiveServer) -> None:
    targets = ["core", "server", "cli"]
    final = await run_sample(live_server, "fanout.bp.lua", {"d": {"targets": targets}})
    assert [lane["report"] for lane in final["lanes"]] == [handled("inspect", t) for t in targets]
    assert final["tally"] == handled("tally", final["lanes"])


async def test_skip_on_skips_the_analysis_of_a_report_that_is_not_ours(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "skip-on.bp.lua", {"d": {"triage": "crash on start"}})
    assert final["triage"]["parts"] == {"verdict": "NOT_APPLICABLE"}
    assert "analyze" not in final and final["summarize"]["agent"] == "summarizer" and final["finished"] is True


async def test_agent_md_agents_run_with_their_file_prompts(live_server: LiveServer) -> None:
    final = await run_sample(live_server, "agent-md.bp.lua", {"d": {"draft": "operators"}})
    assert final["draft"] == handled("drafter", "operators")
    assert final["check"]["parts"] == {"verdict": "PASS"} and final["checked"] is True


async def test_the_operator_auditor_reviews_the_finished_step(live_server: LiveServer) -> None:
    async with rule_bot(live_server) as sid:
        raw = blueprint("after-run-audit.json")
        run_id = await server_launch(live_server, raw, sid=sid, init_ctx={"d": {"request": "count files"}})
        record = await run_result(live_server, run_id)
    assert record["status"] == "done" and record["result"]["result"] == handled("task", "count files")
    trace = live_server.client().get(f"/v1/runs/{run_id}/trace?kind=output.artifact").json()["events"]
    audits = [e for e in trace if e["payload"]["event"]["name"] == "audit:task"]
    assert len(audits) == 1 and audits[0]["step_ref"] == "task"
    review = audits[0]["payload"]["event"]["content"]["value"]
    assert review["agent"] == "auditor" and review["input"]["step_ref"] == "task"
