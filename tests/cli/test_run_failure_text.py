"""What `mse run` prints on stderr when the flow fails."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_mse


def test_a_failed_step_without_a_verdict_prints_no_verdict(tmp_path: Path) -> None:
    bp = tmp_path / "fail.json"
    step = {"kind": "step", "ref": "boom", "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.b"}}
    agent = {"name": "boom", "kind": "lua", "spec": {"source": "error('no good')"}}
    bp.write_text(json.dumps({"id": "fail", "flow": step, "agents": [agent]}))
    ran = run_mse(["run", str(bp)], env={"MSE_HOME": str(tmp_path / "home"), "MSE_HTTP": ""})
    assert ran.returncode == 1
    lines = ran.stderr.splitlines()
    assert lines[-2].startswith("run R-") and "failed: step 'boom'" in lines[-2] and "no good" in lines[-2]
    assert lines[-1] == "  failed step: boom"


def test_a_blocked_step_prints_its_verdict_as_json(tmp_path: Path) -> None:
    bp = tmp_path / "blocked.json"
    step = {"kind": "step", "ref": "gate", "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.g"}}
    agent = {"name": "gate", "kind": "lua", "spec": {"source": "return { value = { why = 'no' }, ok = false }"}}
    bp.write_text(json.dumps({"id": "blocked", "flow": step, "agents": [agent]}))
    ran = run_mse(["run", str(bp)], env={"MSE_HOME": str(tmp_path / "home"), "MSE_HTTP": ""})
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == '  failed step: gate  verdict: {"why": "no"}'
    step_line = next(line for line in ran.stderr.splitlines() if line.startswith("  ✗ gate blocked"))
    assert step_line.endswith(' — {"why":"no"}'), step_line
