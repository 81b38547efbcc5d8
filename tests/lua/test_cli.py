"""`mse bp build` / `mse bp new` in a child interpreter; the templates build, lint clean and run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mlua_swarm.cli.bp_dsl import template_names

from ..conftest import run_mse


def mse_bp(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_mse(["bp", *args], cwd=cwd)


# The `agent` template calls a model: tests/llm/test_template.py runs it against a loopback server.
@pytest.mark.parametrize("template", [t for t in template_names() if t != "agent"])
def test_each_template_builds_lints_clean_and_runs(tmp_path: Path, template: str) -> None:
    created = mse_bp(["new", template, "demo", "-o", "demo.bp.lua"], tmp_path)
    assert created.returncode == 0, created.stderr
    script = tmp_path / "demo.bp.lua"
    assert script.exists()

    built = mse_bp(["build", "demo.bp.lua"], tmp_path)
    assert built.returncode == 0, built.stderr
    value = json.loads(built.stdout)
    assert value["id"] == "demo"

    lint = run_mse(["bp", "lint", "demo.bp.lua", "--strict"], cwd=tmp_path)
    assert lint.returncode == 0, lint.stderr
    assert "bp lint: OK (" in lint.stderr

    ran = run_mse(["run", "demo.bp.lua", "--json", "--ephemeral"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "done"


def test_template_runs_produce_their_documented_results(tmp_path: Path) -> None:
    for template in ("verdict", "fanout", "pipeline"):
        assert mse_bp(["new", template, template, "-o", f"{template}.bp.lua"], tmp_path).returncode == 0
    verdict = json.loads(run_mse(["run", "verdict.bp.lua", "--json", "--ephemeral"], cwd=tmp_path).stdout)
    fanout = json.loads(run_mse(["run", "fanout.bp.lua", "--json", "--ephemeral"], cwd=tmp_path).stdout)
    pipeline = json.loads(run_mse(["run", "pipeline.bp.lua", "--json", "--ephemeral"], cwd=tmp_path).stdout)
    assert verdict["final_ctx"]["accepted"] is True
    assert verdict["final_ctx"]["check"]["parts"]["verdict"] == "PASS"
    assert fanout["final_ctx"]["summary"] == {"lanes": 3, "fulfilled": 3}
    assert pipeline["final_ctx"]["publish"] == "publish(review(draft(an idea)))"
    assert pipeline["final_ctx"]["done"] is True


def test_build_writes_to_an_output_file(tmp_path: Path) -> None:
    mse_bp(["new", "single", "one", "-o", "one.bp.lua"], tmp_path)
    built = mse_bp(["build", "one.bp.lua", "-o", "one.json"], tmp_path)
    assert built.returncode == 0, built.stderr
    assert built.stdout == ""
    assert json.loads((tmp_path / "one.json").read_text())["id"] == "one"


def test_build_prints_authoring_warnings_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "w.bp.lua").write_text(
        'local B = require "bp_dsl"\n'
        "return B.bp { id = 'w', flow = B.pipeline { B.stage 'a' { agent = 'a' }, halt_on = { 'X' } },\n"
        "  agents = { { name = 'a', kind = 'lua', spec = { source = 'return 1' } } } }\n",
        encoding="utf-8",
    )
    built = mse_bp(["build", "w.bp.lua"], tmp_path)
    assert built.returncode == 0, built.stderr
    assert "warn[dsl-dead-halt] w.bp.lua:2" in built.stderr
    assert json.loads(built.stdout)["id"] == "w"


def test_build_reports_a_lua_error_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "e.bp.lua").write_text("local x = 1\nerror('broken here')\n", encoding="utf-8")
    built = mse_bp(["build", "e.bp.lua"], tmp_path)
    assert built.returncode == 2
    assert "error[dsl-error] e.bp.lua:2: broken here" in built.stderr
    assert built.stdout == ""


def test_build_fails_on_a_compile_error(tmp_path: Path) -> None:
    (tmp_path / "c.bp.lua").write_text(
        'local F = require "flow_dsl"\n'
        "return { id = 'c', flow = F.step { agent = 'ghost', input = F.p '$.x', out = F.p '$.y' } }\n",
        encoding="utf-8",
    )
    built = mse_bp(["build", "c.bp.lua"], tmp_path)
    assert built.returncode == 2
    assert "ghost" in built.stderr


def test_an_unresolved_agent_md_only_warns_unless_strict_embed(tmp_path: Path) -> None:
    (tmp_path / "r.bp.lua").write_text(
        'local F = require "flow_dsl"\nlocal B = require "bp_dsl"\n'
        "return B.bp { id = 'r', flow = F.seq {}, agents = { B.agent { md = 'agents/missing.md', kind = 'lua' } } }\n",
        encoding="utf-8",
    )
    lenient = mse_bp(["build", "r.bp.lua"], tmp_path)
    assert lenient.returncode == 0, lenient.stderr
    assert "warn[ref-not-found]" in lenient.stderr
    assert json.loads(lenient.stdout)["agents"] == [{"$agent_md": "agents/missing.md", "kind": "lua"}]
    strict = mse_bp(["build", "r.bp.lua", "--strict-embed"], tmp_path)
    assert strict.returncode == 2
    assert "error[ref-not-found]" in strict.stderr


SPIN = """local F = require "flow_dsl"
return {
  id = "spin",
  flow = F.seq {
    F.fanout { items = F.lit { 1, 2, 3 }, bind = F.p "$.i", join = "all", out = F.p "$.r",
      body = F.step { agent = "work", input = F.p "$.i", out = F.p "$.o" } },
    F.step { agent = "spin", input = "x", out = F.p "$.s" },
  },
  agents = {
    { name = "work", kind = "lua", spec = { source = "return _CTX * 2" } },
    { name = "spin", kind = "lua", spec = { source = "while true do end" }, timeout_secs = 0.5 },
  },
}
"""


def test_mse_run_times_out_an_endless_lua_step(tmp_path: Path) -> None:
    (tmp_path / "spin.bp.lua").write_text(SPIN, encoding="utf-8")
    ran = run_mse(["run", "spin.bp.lua", "--json", "--ephemeral"], cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    result = json.loads(ran.stdout)
    assert result["error"]["failed_step"] == "spin"
    assert "timed out" in result["error"]["message"]
    assert [lane["o"] for lane in result["partial_ctx"]["r"]] == [2, 4, 6]


def test_a_lua_agent_with_bad_syntax_fails_lint_with_invalid_agent_spec(tmp_path: Path) -> None:
    (tmp_path / "bad.bp.lua").write_text(
        'local F = require "flow_dsl"\n'
        "return { id = 'b', flow = F.step { agent = 'x', input = 1, out = F.p '$.y' },\n"
        "  agents = { { name = 'x', kind = 'lua', spec = { source = 'return = 1' } } } }\n",
        encoding="utf-8",
    )
    lint = run_mse(["bp", "lint", "bad.bp.lua"], cwd=tmp_path)
    assert lint.returncode == 2
    assert "invalid-agent-spec" in lint.stderr
    assert "x.lua:1:" in lint.stderr


@pytest.mark.parametrize(
    ("args", "code", "place"),
    [
        (["new", "pipeline", "bad name!"], "name-invalid", "command line 'NAME'"),
        (["new", "pipeline", "ok", "--stages", "a,b c"], "name-invalid", "command line '--stages'"),
        (["new", "single", "ok", "--operator", "seat/a"], "name-invalid", "command line '--operator'"),
        (["new", "single", "ok", "-o", "missing/dir/ok.bp.lua"], "output-unwritable", "missing/dir/ok.bp.lua"),
    ],
)
def test_bad_arguments_of_bp_new_get_a_diagnostic_and_exit_2(
    tmp_path: Path, args: list[str], code: str, place: str
) -> None:
    made = mse_bp(args, tmp_path)
    assert made.returncode == 2, made.stderr
    assert f"error[{code}] {place}" in made.stderr
    assert "\n  hint: " in made.stderr
    assert "Traceback" not in made.stderr
    assert made.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_bp_new_into_a_folder_writes_name_bp_lua_there(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    made = mse_bp(["new", "single", "greet", "-o", "flows"], tmp_path)
    assert made.returncode == 0, made.stderr
    assert 'id = "greet"' in (tmp_path / "flows" / "greet.bp.lua").read_text()


def test_bp_build_to_an_unwritable_output_is_a_diagnostic(tmp_path: Path) -> None:
    assert mse_bp(["new", "single", "one", "-o", "one.bp.lua"], tmp_path).returncode == 0
    built = mse_bp(["build", "one.bp.lua", "-o", "nowhere/one.json"], tmp_path)
    assert built.returncode == 2, built.stderr
    assert "error[output-unwritable] nowhere/one.json: cannot write the output" in built.stderr
    assert "Traceback" not in built.stderr
