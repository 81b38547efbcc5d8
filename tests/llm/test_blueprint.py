"""agent_block in Blueprints: `mse run` against a loopback model, run totals, and installs without the extra."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.run.launch import run_blueprint
from mlua_swarm.worker.kinds import is_runnable

from ..conftest import json_of, run_mse
from ..serverkit import start_server
from .conftest import facts_server
from .fakes import OpenAIServer, Reply


def step(ref: str, src: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "path", "at": src}, "out": {"op": "path", "at": out}}


def blueprint(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "report.lua").write_text(
        'bus.emit("artifact", { name = "summary", content = _PROMPT })\n'
        'bus.emit("result", { content = "reported", usage = { input_tokens = 4, output_tokens = 1 } })\n',
        encoding="utf-8",
    )
    return {
        "id": "release-check",
        "flow": {
            "kind": "seq",
            "children": [step("checker", "$.q", "$.v"), step("report", "$.v", "$.r")],
        },
        "agents": [
            {
                "name": "checker",
                "kind": "agent_block",
                "spec": {"mcp_servers": [facts_server()]},
                "profile": {
                    "model": "openai:gpt-4o-mini",
                    "system_prompt": "Look the status up, then answer PASS or FAIL.",
                    "tools": ["mcp__facts__lookup"],
                },
                "verdict": {"channel": "body", "values": ["PASS", "FAIL"]},
            },
            {"name": "report", "kind": "agent_block", "spec": {"script_path": "report.lua"}},
        ],
        "default_init_ctx": {"q": "Is the release green?"},
    }


def test_mse_run_records_llm_usage_and_runs_show_sums_it(
    tmp_path: Path, openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_server.model = "gpt-4o-mini-2024-07-18"
    openai_server.play(
        Reply(tool_calls=[("mcp__facts__lookup", {"key": "status"})], input_tokens=1000, output_tokens=20),
        Reply(text="PASS", input_tokens=1100, output_tokens=2, cached_tokens=1000),
    )
    (tmp_path / "bp.json").write_text(json.dumps(blueprint(tmp_path)), encoding="utf-8")
    env = {"MSE_HOME": str(tmp_path / "home")}

    ran = run_mse(["run", "bp.json", "--json"], cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    done = json_of(ran)
    assert done["status"] == "done"
    assert done["final_ctx"]["v"] == "PASS"
    assert done["final_ctx"]["r"] == {"out": "reported", "parts": {"summary": "PASS"}}

    steps = {s["step_ref"]: s["stats"] for s in json_of(run_mse(["runs", "steps", done["run_id"], "--json"], env=env))}
    assert steps["checker"]["model"] == "gpt-4o-mini-2024-07-18" and steps["checker"]["num_turns"] == 2
    assert steps["checker"]["usage"]["cached_input_tokens"] == 1000
    assert steps["report"]["usage"] == {
        "input_tokens": 4,
        "output_tokens": 1,
        "total_tokens": 5,
        "cached_input_tokens": 0,
    }
    assert steps["report"]["cost_usd"] is None  # a script with no model has no price

    shown = json_of(run_mse(["runs", "show", done["run_id"], "--json"], env=env))
    checker_cost = (1100 * 0.15 + 1000 * 0.075 + 22 * 0.60) / 1e6
    assert shown["totals"]["usage"] == {
        "input_tokens": 2104,
        "output_tokens": 23,
        "total_tokens": 2127,
        "cached_input_tokens": 1000,
    }
    assert (shown["totals"]["llm_steps"], shown["totals"]["num_turns"]) == (2, 2)
    assert shown["totals"]["cost_usd"] == pytest.approx(checker_cost)
    assert shown["totals"]["cost_unknown_steps"] == 1

    text = run_mse(["runs", "show", done["run_id"]], env=env).stdout
    assert "llm        2 step(s), 2 turn(s), 2104 in (1000 cached) + 23 out = 2127 tokens, $0.0003" in text


def test_without_the_provider_sdks_lint_accepts_and_a_run_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = blueprint(tmp_path)
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.setitem(sys.modules, "anthropic", None)
    assert not is_runnable("agent_block")
    compiled = compile_blueprint(raw, base_dir=tmp_path)
    with pytest.raises(DiagnosticError) as raised:
        asyncio.run(run_blueprint(compiled))
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "kind-unavailable"
    assert "needs the provider SDKs of the llm extra: pip install 'mlua-swarm[llm]'" in diagnostic.message
    assert "(agents: checker, report)" in diagnostic.message


def test_a_server_runs_agent_block_steps_and_runs_show_sums_them_over_http(
    tmp_path: Path, openai_server: OpenAIServer
) -> None:
    openai_server.model = "gpt-4o-mini"
    openai_server.play(Reply(tool_calls=[("mcp__facts__lookup", {"key": "status"})]), Reply(text="PASS"))
    raw = blueprint(tmp_path)
    raw["flow"] = step("checker", "$.q", "$.v")
    raw["agents"] = raw["agents"][:1]
    (tmp_path / "bp.json").write_text(json.dumps(raw), encoding="utf-8")
    server = start_server(tmp_path / "server")
    try:
        env = {"MSE_HTTP": "", "MSE_ADMIN_TOKEN": ""}
        ran = run_mse(["run", "bp.json", "--json", "--server", server.base_url], cwd=tmp_path, env=env)
        assert ran.returncode == 0, ran.stderr
        done = json_of(ran)
        assert done["final_ctx"]["v"] == "PASS"
        shown = json_of(run_mse(["runs", "show", done["run_id"], "--server", server.base_url, "--json"], env=env))
        assert shown["totals"]["usage"] == {
            "input_tokens": 20,
            "output_tokens": 10,
            "total_tokens": 30,
            "cached_input_tokens": 0,
        }
        assert shown["totals"]["cost_usd"] == pytest.approx((20 * 0.15 + 10 * 0.60) / 1e6)
        text = run_mse(["runs", "show", done["run_id"], "--server", server.base_url], env=env).stdout
        assert "llm        1 step(s), 2 turn(s), 20 in (0 cached) + 10 out = 30 tokens" in text
    finally:
        server.stop()


def test_an_agent_block_runner_grant_outranks_profile_tools(tmp_path: Path) -> None:
    raw = blueprint(tmp_path)
    checker = raw["agents"][0]
    spec = {"mcp_servers": [facts_server(), facts_server(name="docs")]}
    raw["agents"] = [
        {**checker, "name": "profile-grant", "spec": spec},
        {**checker, "name": "ref-grant", "spec": spec, "runner_ref": "docs-only"},
        {**checker, "name": "none", "spec": spec, "runner": {"backend": "agent_block_in_process", "tools": []}},
    ]
    raw["runners"] = [{"name": "docs-only", "runner": {"backend": "agent_block_in_process", "tools": ["mcp__docs__x"]}}]
    raw["flow"] = {"kind": "seq", "children": [step(a["name"], "$.q", f"$.{a['name']}") for a in raw["agents"]]}
    compiled = compile_blueprint(raw, base_dir=tmp_path)
    granted = {name: [s.name for s in a.spawner.settings.granted] for name, a in compiled.agents.items()}
    assert granted == {"profile-grant": ["facts"], "ref-grant": ["docs"], "none": []}
