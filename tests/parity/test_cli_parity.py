"""Upstream parity of `mse bp` through the real command line (issue #13, items 5 and 6)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from mlua_swarm.cli.bp_dsl import template_names

from ..conftest import run_mse

SCRIPT = """local F = require "flow_dsl"
return {
  id = "two",
  flow = F.seq {
    F.step { agent = "a", input = F.p "$.x", out = F.p "$.a" },
    F.step { agent = "b", input = F.p "$.a", out = F.p "$.b" },
  },
  agents = {
    { name = "a", kind = "rust_fn", spec = { fn_id = "identity" } },
    { name = "b", kind = "rust_fn", spec = { fn_id = "identity" } },
  },
  operators = { { name = "seat" } },
}
"""


# -- item 6: success lines scripts and CI grep for ---------------------------------------------------


def test_build_reports_compile_lint_ok_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "two.bp.lua").write_text(SCRIPT, encoding="utf-8")
    built = run_mse(["bp", "build", "two.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "compile lint: OK (2 agent(s), 1 operator(s) checked)" in built.stderr.splitlines()
    assert json.loads(built.stdout)["id"] == "two"


def test_lint_reports_bp_lint_ok_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "two.bp.lua").write_text(SCRIPT, encoding="utf-8")
    linted = run_mse(["bp", "lint", "two.bp.lua"], cwd=tmp_path)
    assert linted.returncode == 0, linted.stderr
    assert linted.stderr.splitlines()[-1] == "bp lint: OK (2 agent(s), 1 operator(s) checked)"
    assert linted.stdout == ""


DEAD_HALT = """local B = require "bp_dsl"
return B.bp {
  id = "dead",
  flow = B.pipeline { B.stage "a" { agent = "a", input = "$.d.x" }, halt_on = { "BLOCKED" } },
  agents = { { name = "a", kind = "lua", spec = { source = "return 1" } } },
}
"""


def test_dsl_warnings_are_printed_but_leave_the_verdict_ok(tmp_path: Path) -> None:
    (tmp_path / "dead.bp.lua").write_text(DEAD_HALT, encoding="utf-8")
    linted = run_mse(["bp", "lint", "dead.bp.lua"], cwd=tmp_path)
    assert linted.returncode == 0
    assert "warn[dsl-dead-halt]" in linted.stderr
    assert linted.stderr.splitlines()[-1] == "bp lint: OK (1 agent(s), 0 operator(s) checked)"
    strict = run_mse(["bp", "lint", "dead.bp.lua", "--strict"], cwd=tmp_path)
    assert strict.returncode == 1
    built = run_mse(["bp", "build", "dead.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0 and "compile lint: OK (1 agent(s), 0 operator(s) checked)" in built.stderr


def test_an_unhandled_verdict_value_is_shown_but_the_verdict_stays_ok(tmp_path: Path) -> None:
    script = """local B = require "bp_dsl"
return B.bp {
  id = "gate",
  flow = B.pipeline { B.stage "review" { agent = "reviewer", input = "$.d.x", halt_on = { "BLOCKED" } } },
  agents = { { name = "reviewer", kind = "lua", spec = { source = "return 1" },
               verdict = { channel = "part", values = { "PASS", "BLOCKED" } } } },
}
"""
    (tmp_path / "gate.bp.lua").write_text(script, encoding="utf-8")
    built = run_mse(["bp", "build", "gate.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0
    assert "info[verdict-value-unhandled]" in built.stderr and "'PASS'" in built.stderr
    assert "compile lint: OK (1 agent(s), 0 operator(s) checked)" in built.stderr.splitlines()


def test_lint_reports_warn_and_error_verdicts(tmp_path: Path) -> None:
    warn = SCRIPT.replace('operators = { { name = "seat" } },', 'metadata = { lints = { nonsense = "deny" } },')
    (tmp_path / "warn.bp.lua").write_text(warn, encoding="utf-8")
    linted = run_mse(["bp", "lint", "warn.bp.lua"], cwd=tmp_path)
    assert linted.returncode == 0
    assert linted.stderr.splitlines()[-1] == "bp lint: WARN (2 agent(s), 0 operator(s) checked) — 1 warning(s)"
    (tmp_path / "bad.bp.lua").write_text(SCRIPT.replace('agent = "b"', 'agent = "ghost"'), encoding="utf-8")
    failed = run_mse(["bp", "lint", "bad.bp.lua"], cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.splitlines()[-1].startswith("bp lint: ERROR (2 agent(s), 1 operator(s) checked) — 1 error(s)")
    built = run_mse(["bp", "build", "bad.bp.lua"], cwd=tmp_path)
    assert built.returncode == 2 and built.stdout == ""
    assert "compile lint FAILED: ERROR (2 agent(s), 1 operator(s) checked) — 1 error(s)" in built.stderr


# -- item 5: `mse bp new` with upstream's flags -------------------------------------------------------


def test_new_prints_the_script_on_stdout_and_it_builds(tmp_path: Path) -> None:
    made = run_mse(["bp", "new", "pipeline", "flow-a", "--stages", "fetch, summarise,"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "flow-a.bp.lua").write_text(made.stdout)
    built = run_mse(["bp", "build", "flow-a.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    value = json.loads(built.stdout)
    assert value["id"] == "flow-a"
    assert [agent["name"] for agent in value["agents"]] == ["fetch", "summarise"]
    ran = run_mse(["run", "flow-a.bp.lua", "--json", "--ephemeral"], cwd=tmp_path)
    assert json.loads(ran.stdout)["final_ctx"]["summarise"] == "summarise(fetch(an idea))"


def test_new_writes_to_out_and_names_the_single_agent(tmp_path: Path) -> None:
    made = run_mse(["bp", "new", "single", "one", "--agent", "greeter", "-o", "one.bp.lua"], cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout == ""
    assert "one.bp.lua" in made.stderr
    built = run_mse(["bp", "build", "one.bp.lua"], cwd=tmp_path)
    assert [agent["name"] for agent in json.loads(built.stdout)["agents"]] == ["greeter"]


def test_new_with_operator_and_binding_scaffolds_upstream_operator_agents(tmp_path: Path) -> None:
    made = run_mse(
        ["bp", "new", "fanout", "fan", "--stages", "lint,test", "--operator", "seat-a", "--binding", "codex"],
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "fan.bp.lua").write_text(made.stdout)
    built = run_mse(["bp", "build", "fan.bp.lua"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert "compile lint: OK (3 agent(s), 1 operator(s) checked)" in built.stderr
    value = json.loads(built.stdout)
    assert value["operators"] == [{"name": "seat-a", "kind": "main_ai"}]
    for agent in value["agents"]:
        assert agent["kind"] == "operator"
        assert agent["spec"] == {"operator_ref": "seat-a"}
        assert agent["runner"] == {"backend": "ws_operator", "variant": "codex", "tools": []}
    linted = run_mse(["bp", "lint", "fan.bp.lua", "--strict"], cwd=tmp_path)
    assert linted.returncode == 0, linted.stderr
    assert "step-naming-collision" not in linted.stderr, "lanes under $.lane.<x> claim `lane` only weakly"


def test_binding_alone_implies_the_default_operator(tmp_path: Path) -> None:
    made = run_mse(["bp", "new", "single", "s", "--binding", "claude"], cwd=tmp_path)
    assert 'operator_ref = "main-ai"' in made.stdout


def test_an_unknown_template_is_refused_with_upstreams_words_and_a_diagnostic(tmp_path: Path) -> None:
    made = run_mse(["bp", "new", "pipelin", "x"], cwd=tmp_path)
    assert made.returncode == 2  # upstream exits 1; we exit 2 for invalid input, as every command does
    assert f"unknown template 'pipelin': accepted = {' / '.join(template_names())}" in made.stderr
    assert "error[template-unknown] command line 'TEMPLATE'" in made.stderr
    assert "hint: " in made.stderr
    assert made.stdout == ""


def test_templates_are_the_bp_lua_files_of_the_templates_folder() -> None:
    folder = Path(str(resources.files("mlua_swarm").joinpath("templates")))
    assert template_names() == sorted(p.name.removesuffix(".bp.lua") for p in folder.glob("*.bp.lua"))
    assert {"pipeline", "single", "verdict", "fanout"} <= set(template_names())
