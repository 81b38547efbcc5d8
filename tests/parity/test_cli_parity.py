"""Upstream parity of `mse bp` through the real command line (issue #13, items 5 and 6)."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert "compile lint: ERROR (" in built.stderr
