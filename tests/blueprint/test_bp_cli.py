"""`mse bp lint` and `mse bp schema` through a real child process: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from ..conftest import run_mse
from .helpers import CHECKER_PART, agent, blueprint, branch, eq, seq, step


def write_bp(tmp_path: Path, raw: Any, name: str = "bp.json") -> Path:
    target = tmp_path / name
    target.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return target


def warning_bp() -> dict[str, Any]:
    return blueprint(seq(step("checker", out="$.check"), branch(eq("$.check.parts.verdict", "PASS"))), CHECKER_PART)


def test_clean_blueprint_exits_zero(tmp_path: Path) -> None:
    target = write_bp(tmp_path, blueprint(step("a"), agent("a")))
    proc = run_mse(["bp", "lint", str(target)])
    assert proc.returncode == 0, proc.stderr
    assert "bp lint: OK (1 agent(s), 0 operator(s) checked)" in proc.stderr
    assert proc.stdout == ""


def test_warnings_exit_zero_and_one_with_strict(tmp_path: Path) -> None:
    target = write_bp(tmp_path, warning_bp())
    plain = run_mse(["bp", "lint", str(target)])
    assert plain.returncode == 0, plain.stderr
    assert "info[verdict-value-unhandled]" in plain.stderr and "hint:" in plain.stderr
    assert plain.stderr.splitlines()[-1].startswith("bp lint: OK (")
    strict = run_mse(["bp", "lint", str(target), "--strict"])
    assert strict.returncode == 2, "strict makes an unhandled verdict an error"
    assert "error[verdict-value-unhandled]" in strict.stderr


def test_other_warnings_exit_one_with_strict(tmp_path: Path) -> None:
    target = write_bp(tmp_path, blueprint(step("a"), agent("a", lints={"no-such-lint": "deny"})))
    assert run_mse(["bp", "lint", str(target)]).returncode == 0
    proc = run_mse(["bp", "lint", str(target), "--strict"])
    assert proc.returncode == 1, proc.stderr
    assert "warn[unknown-lint-kind]" in proc.stderr


def test_errors_exit_two_with_readable_diagnostics(tmp_path: Path) -> None:
    target = write_bp(tmp_path, blueprint(step("ghost"), agent("a", profile={"system_promt": ""})))
    proc = run_mse(["bp", "lint", str(target)])
    assert proc.returncode == 2
    assert f"error[schema] {target}, agent 'a', at $.agents[0].profile.system_promt" in proc.stderr
    assert "did you mean 'system_prompt'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_json_exits_two_with_line(tmp_path: Path) -> None:
    target = write_bp(tmp_path, '{"id": "x",\n "flow": }')
    proc = run_mse(["bp", "lint", str(target)])
    assert proc.returncode == 2
    assert f"error[invalid-json] {target}:2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_file_and_bad_fn_option_exit_two(tmp_path: Path) -> None:
    missing = run_mse(["bp", "lint", str(tmp_path / "none.json")])
    assert missing.returncode == 2 and "file-not-found" in missing.stderr
    target = write_bp(tmp_path, blueprint(step("a"), agent("a")))
    bad_fn = run_mse(["bp", "lint", str(target), "--fn", "x=no_such_module_here:f"])
    assert bad_fn.returncode == 2 and "invalid-option" in bad_fn.stderr
    assert "Traceback" not in missing.stderr + bad_fn.stderr


def test_fn_option_registers_function_ids(tmp_path: Path) -> None:
    (tmp_path / "lint_fns_mod.py").write_text("def hello(inv):\n    return 'hi'\n")
    target = write_bp(tmp_path, blueprint(step("a"), agent("a", spec={"fn_id": "hello"})))
    assert run_mse(["bp", "lint", str(target)]).returncode == 2
    proc = run_mse(["bp", "lint", str(target), "--fn", "hello=lint_fns_mod:hello"])
    assert proc.returncode == 0, proc.stderr


def test_include_option_resolves_references(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "prompt.txt").write_text("be brief")
    bp_dir = tmp_path / "bp"
    bp_dir.mkdir()
    target = write_bp(bp_dir, blueprint(step("a"), agent("a", profile={"system_prompt": {"$file": "prompt.txt"}})))
    missing = run_mse(["bp", "lint", str(target)])
    assert missing.returncode == 2 and "ref-not-found" in missing.stderr
    assert run_mse(["bp", "lint", str(target), "--include", str(shared)]).returncode == 0


def test_json_output_is_one_document(tmp_path: Path) -> None:
    target = write_bp(tmp_path, warning_bp())
    proc = run_mse(["bp", "lint", str(target), "--json"])
    assert proc.returncode == 0
    document = json.loads(proc.stdout)
    assert document["status"] == "ok"
    [diag] = document["diagnostics"]
    assert diag["kind"] == "verdict-value-unhandled" and diag["level"] == "info" and diag["help"]
    assert diag["span"]["element"] == {"type": "step", "name": "checker"}
    assert diag["span"]["file"] == str(target)


def test_yaml_blueprints_lint(tmp_path: Path) -> None:
    target = write_bp(
        tmp_path,
        "id: y\nflow: {kind: step, ref: a, in: {op: lit, value: 1}, out: {op: path, at: $.o}}\n"
        "agents: [{name: a, kind: rust_fn, spec: {fn_id: identity}}]\n",
        "bp.yaml",
    )
    proc = run_mse(["bp", "lint", str(target)])
    assert proc.returncode == 0, proc.stderr


def test_schema_prints_a_valid_json_schema() -> None:
    proc = run_mse(["bp", "schema"])
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == "Blueprint"
    assert schema["required"] == ["id", "flow"]
    assert schema["additionalProperties"] is False


def test_bp_without_a_sub_command_is_a_usage_error() -> None:
    proc = run_mse(["bp"])
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_bp_lua_blueprints_lint(tmp_path: Path) -> None:
    script = (
        'local F = require "flow_dsl"\n'
        'return { id = "l", flow = F.step{agent = "ghost", input = F.p("$.in"), out = F.p("$.out")} }\n'
    )
    target = write_bp(tmp_path, script, "flow.bp.lua")
    proc = run_mse(["bp", "lint", str(target)])
    assert proc.returncode == 2
    assert "error[unresolved-agent-ref]" in proc.stderr and str(target) in proc.stderr


def test_lint_reports_middleware_findings(tmp_path: Path) -> None:
    raw = {
        "id": "x",
        "flow": {"kind": "step", "ref": "a", "in": {"op": "lit", "value": 1}, "out": {"op": "path", "at": "$.a"}},
        "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "spawner_hints": {"layers": ["turbo"]},
    }
    proc = run_mse(["bp", "lint", str(write_bp(tmp_path, raw)), "--strict"])
    assert proc.returncode == 1 and "[unknown-spawner-hint]" in proc.stderr and "turbo" in proc.stderr
