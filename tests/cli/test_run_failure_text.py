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
