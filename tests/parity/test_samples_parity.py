"""Bundled samples and the bundled agents folder, last in the reference cascade (issue #13, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.agent_md import parse_agent_md
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.blueprint.loader import INCLUDES_ENV, expand_refs, load_blueprint_source, reference_dirs
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.run import Run
from mlua_swarm.samples import bundled_agents_dir, list_samples, samples_dir

from ..conftest import run_mse

EXPECTED_FINAL: dict[str, dict[str, Any]] = {
    "01-assign-only": {"count": 4, "has_flow": True, "size": "long"},
    "02-verdict-loop": {"code": "parse input DONE; write output DONE", "tries": 2, "accepted": True},
    "03-pipeline": {"draft": "Notes on durable runs", "publish": {"published": "Notes on durable runs"}, "done": True},
    "04-bundled-agents": {"review": {"out": "every claim has a source", "parts": {"verdict": "PASS"}}, "done": True},
    "05-fanout": {"summary": {"passed": 2, "failed": 1, "status": "MAJOR"}},
}


def test_the_samples_folder_ships_every_expected_sample() -> None:
    assert list(list_samples()) == sorted(EXPECTED_FINAL)
    assert bundled_agents_dir() == samples_dir() / "agents"
    assert {p.name for p in bundled_agents_dir().glob("*.md")} >= {"researcher.md", "reviewer.md", "summarizer.md"}


@pytest.mark.parametrize("name", sorted(EXPECTED_FINAL))
async def test_each_sample_compiles_without_warnings_and_runs_to_its_documented_result(name: str) -> None:
    path = list_samples()[name]
    warnings: list[Any] = []
    raw, base = load_blueprint_source(path, warnings=warnings)
    compiled = compile_blueprint(raw, base_dir=base, source=str(path))
    assert [w for w in warnings if w.level != "info"] == []
    async with Run(compiled) as run:
        result = await run.execute(None)
    assert result.status == "done", result.error
    final = result.final_ctx
    for key, value in EXPECTED_FINAL[name].items():
        assert final[key] == value, (name, key, final.get(key))


@pytest.mark.parametrize("name", ["researcher", "reviewer", "summarizer"])
def test_each_bundled_agent_file_parses_with_a_body(name: str) -> None:
    agent = parse_agent_md((bundled_agents_dir() / f"{name}.md").read_text(encoding="utf-8"), kind="operator")
    assert agent["name"] == name
    assert agent["profile"]["description"]
    assert len(agent["profile"]["system_prompt"]) > 100


def test_a_bare_agent_md_falls_through_to_the_bundled_folder(tmp_path: Path) -> None:
    out = expand_refs({"agents": [{"$agent_md": "researcher.md", "kind": "lua"}]}, tmp_path)
    bundled = parse_agent_md((bundled_agents_dir() / "researcher.md").read_text(encoding="utf-8"), kind="lua")
    assert out["agents"][0] == bundled


def test_the_bundled_folder_is_last_and_every_closer_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, shared, env_dir, cli_dir = (tmp_path / n for n in ("base", "base/shared", "env", "cli"))
    for folder in (base, shared, env_dir, cli_dir):
        folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv(INCLUDES_ENV, str(env_dir))
    raw = {"blueprint_ref_includes": ["shared"], "agents": [{"$agent_md": "reviewer.md", "kind": "lua"}]}
    assert reference_dirs(raw, base, [cli_dir]) == [base, shared, env_dir, cli_dir, bundled_agents_dir()]

    def prompt() -> str:
        return str(expand_refs(raw, base, includes=[cli_dir])["agents"][0]["profile"]["system_prompt"])

    assert "verdict" in prompt()
    for folder, word in ((cli_dir, "cli"), (env_dir, "env"), (shared, "declared"), (base, "base")):
        (folder / "reviewer.md").write_text(f"---\nname: reviewer\n---\nfrom {word}\n", encoding="utf-8")
        assert prompt() == f"from {word}\n"


def test_a_file_in_no_folder_lists_the_bundled_folder_among_those_searched(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticError) as info:
        expand_refs({"agents": [{"$agent_md": "nobody.md"}]}, tmp_path)
    [diag] = info.value.diagnostics
    assert diag.code == "ref-not-found"
    assert str(bundled_agents_dir()) in diag.message


def test_a_script_naming_a_bundled_agent_builds_from_any_folder(tmp_path: Path) -> None:
    script = """local B = require "bp_dsl"
return B.bp {
  id = "uses-bundled",
  flow = B.pipeline { B.stage "review" { agent = "reviewer", input = "$.d.x" } },
  agents = { B.agent { md = "reviewer.md", kind = "lua", spec = { source = "return _PROMPT" } } },
}
"""
    (tmp_path / "uses.bp.lua").write_text(script, encoding="utf-8")
    built = run_mse(["bp", "build", "--strict-embed", "uses.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["agents"][0]["$agent_md"] == "reviewer.md"
    (tmp_path / "missing.bp.lua").write_text(script.replace("reviewer.md", "nobody.md"), encoding="utf-8")
    missing = run_mse(["bp", "build", "--strict-embed", "missing.bp.lua"], cwd=tmp_path)
    assert missing.returncode == 2 and "ref-not-found" in missing.stderr


def test_a_bare_bundled_agent_is_a_complete_operator_agent(tmp_path: Path) -> None:
    """Upstream users name a bundled file with only an operator seat; the file supplies the binding."""
    script = """local F = require "flow_dsl"
return {
  id = "bundled-operator",
  flow = F.step { agent = "researcher", input = F.lit(""), out = F.p("$.solo") },
  agents = { { ["$agent_md"] = "researcher.md", spec = { operator_ref = "main-ai" } } },
  operators = { { name = "main-ai" } },
  strategy = { strict_refs = true, strict_kind = true },
}
"""
    (tmp_path / "op.bp.lua").write_text(script, encoding="utf-8")
    env = {INCLUDES_ENV: ""}
    built = run_mse(["bp", "build", "op.bp.lua"], cwd=tmp_path, env=env)
    assert built.returncode == 0, built.stderr
    assert "compile lint: OK (1 agent(s), 1 operator(s) checked)" in built.stderr.splitlines()
