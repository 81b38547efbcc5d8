"""Kinds upstream defines but this installation cannot run yet (issue #13, item 8).

Upstream's `bp build` and `bp lint` accept `operator` and `agent_block` agents. Here they compile
and lint; a run refuses them before anything starts, once per kind, saying the kind is not
available in this installation (not a typo hint). Registering a kind makes it runnable.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.run.launch import run_blueprint
from mlua_swarm.worker import kinds
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter
from mlua_swarm.worker.kinds import AgentKind, LinkEnv, UnavailableKind, is_runnable

from ..conftest import mse_env, run_mse


def step(ref: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "path", "at": "$.x"}, "out": {"op": "path", "at": out}}


BLUEPRINT: dict[str, Any] = {
    "id": "upstream-kinds",
    "flow": {"kind": "seq", "children": [step("ask", "$.asked"), step("review", "$.reviewed"), step("sum", "$.sum")]},
    "agents": [
        {
            "name": "ask",
            "kind": "operator",
            "spec": {"operator_ref": "main-ai"},
            "runner": {"backend": "ws_operator", "variant": "claude", "tools": []},
        },
        {
            "name": "review",
            "kind": "operator",
            "spec": {"operator_ref": "main-ai"},
            "runner": {"backend": "ws_operator", "variant": "claude", "tools": []},
        },
        {"name": "sum", "kind": "agent_block", "spec": {}, "runner": {"backend": "agent_block_in_process"}},
    ],
    "operators": [{"name": "main-ai", "kind": "main_ai"}],
    "strategy": {"strict_refs": True, "strict_kind": True},
    "default_init_ctx": {"x": "hello"},
}


def test_lint_and_build_accept_upstream_kinds(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BLUEPRINT))
    linted = run_mse(["bp", "lint", "bp.json", "--strict"], cwd=tmp_path)
    assert linted.returncode == 0, linted.stderr
    assert linted.stderr.splitlines()[-1] == "bp lint: OK (3 agent(s), 1 operator(s) checked)"

    script = "return " + lua_table(BLUEPRINT) + "\n"
    (tmp_path / "bp.bp.lua").write_text(script)
    built = run_mse(["bp", "build", "bp.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "compile lint: OK (3 agent(s), 1 operator(s) checked)" in built.stderr
    assert json.loads(built.stdout)["agents"][2]["kind"] == "agent_block"


def test_an_operator_agent_still_needs_its_operator_ref(tmp_path: Path) -> None:
    raw = json.loads(json.dumps(BLUEPRINT))
    raw["agents"][0]["spec"] = {}
    with pytest.raises(DiagnosticError) as raised:
        compile_blueprint(raw, base_dir=tmp_path)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "invalid-agent-spec"
    assert "spec.operator_ref" in diagnostic.message


# agent_block is runnable wherever the llm extra is installed: a stand-in refusing kind plays an
# installation that cannot run it. Operator agents refuse by themselves outside a server.
WITHOUT_KINDS = (
    "import sys\n"
    "from mlua_swarm.worker.kinds import UnavailableKind, register_kind\n"
    "register_kind(UnavailableKind('agent_block'))\n"
    "from mlua_swarm.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def without_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kinds._LOADED, "agent_block", UnavailableKind("agent_block"))


def test_mse_run_refuses_each_unavailable_kind_once(tmp_path: Path) -> None:
    (tmp_path / "bp.json").write_text(json.dumps(BLUEPRINT))
    ran = subprocess.run(
        [sys.executable, "-c", WITHOUT_KINDS, "run", "bp.json", "--ephemeral"],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert ran.returncode == 2, ran.stderr
    refusals = [line for line in ran.stderr.splitlines() if "kind-unavailable" in line]
    assert len(refusals) == 2, ran.stderr
    assert "agent kind 'operator' needs an operator hub, which only a server has" in refusals[0]
    assert "mse run --server URL" in refusals[0] and "(agents: ask, review)" in refusals[0]
    assert "agent kind 'agent_block' is not available in this installation yet (agents: sum)" in refusals[1]
    assert "did you mean" not in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.usefixtures("without_kinds")
def test_run_blueprint_refuses_before_any_step_starts(tmp_path: Path) -> None:
    compiled = compile_blueprint(BLUEPRINT, base_dir=tmp_path)
    with pytest.raises(DiagnosticError) as raised:
        asyncio.run(run_blueprint(compiled))
    assert [d.code for d in raised.value.diagnostics] == ["kind-unavailable", "kind-unavailable"]


class EchoKind(AgentKind):
    """A stand-in implementation, registered the way the operator / agent_block helpers register theirs."""

    name = "agent_block"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        return InProcSpawner().register(str(agent["name"]), lambda inv: f"summary of {inv.prompt}")


@pytest.mark.usefixtures("without_kinds")
def test_registering_a_factory_makes_the_kind_runnable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_runnable("agent_block")
    monkeypatch.setitem(kinds._LOADED, "agent_block", EchoKind())
    assert is_runnable("agent_block")
    raw = {**BLUEPRINT, "flow": step("sum", "$.sum"), "agents": [BLUEPRINT["agents"][2]], "operators": []}
    result = asyncio.run(run_blueprint(compile_blueprint(raw, base_dir=tmp_path)))
    assert result.status == "done"
    assert result.final_ctx["sum"] == "summary of hello"


def test_a_kind_nobody_defines_is_still_a_typo(tmp_path: Path) -> None:
    raw = {**BLUEPRINT, "agents": [{**BLUEPRINT["agents"][2], "kind": "agent_blok"}], "flow": step("sum", "$.s")}
    with pytest.raises(DiagnosticError) as raised:
        compile_blueprint(raw, base_dir=tmp_path)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "unknown-agent-kind"
    assert "did you mean 'agent_block'" in (diagnostic.hint or "")


def lua_table(value: Any) -> str:
    """The Lua constructor for a JSON value (strings via JSON escapes, which Lua reads the same here)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f'["{k}"] = {lua_table(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "{ " + ", ".join(lua_table(v) for v in value) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
