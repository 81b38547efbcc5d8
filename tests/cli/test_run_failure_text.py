"""What `mse run` prints on stderr when the flow fails."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import run_mse


def run_one_lua_step(tmp_path: Path, ref: str, source: str) -> subprocess.CompletedProcess[str]:
    """`mse run` of a Blueprint whose one step is the Lua agent `ref` running `source`."""
    bp = tmp_path / f"{ref}.json"
    step = {"kind": "step", "ref": ref, "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.out"}}
    agent = {"name": ref, "kind": "lua", "spec": {"source": source}}
    bp.write_text(json.dumps({"id": ref, "flow": step, "agents": [agent]}))
    return run_mse(["run", str(bp)], env={"MSE_HOME": str(tmp_path / "home"), "MSE_HTTP": ""})


def test_a_failed_step_without_a_verdict_prints_no_verdict(tmp_path: Path) -> None:
    ran = run_one_lua_step(tmp_path, "boom", "error('no good')")
    assert ran.returncode == 1
    lines = ran.stderr.splitlines()
    assert lines[-2].startswith("run R-") and "failed: step 'boom'" in lines[-2] and "no good" in lines[-2]
    assert lines[-1] == "  failed step: boom"


def test_a_blocked_step_prints_its_verdict_as_json(tmp_path: Path) -> None:
    ran = run_one_lua_step(tmp_path, "gate", "return { value = { why = 'no' }, ok = false }")
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-1] == '  failed step: gate  verdict: {"why": "no"}'
    step_line = next(line for line in ran.stderr.splitlines() if line.startswith("  ✗ gate blocked"))
    assert step_line.endswith(' — {"why":"no"}'), step_line
