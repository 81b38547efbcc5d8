"""A step's child process gets its own attempt's credentials, never the server's admin token.

`mse server install` runs the server with `MSE_ADMIN_TOKEN` in its environment, and children
inherited the whole environment: any command a Blueprint ran could then drive the server as admin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import mse_env

SHOW = 'import json, os; print(json.dumps({k: os.environ.get(k) for k in ("MSE_ADMIN_TOKEN", "MSE_TOKEN", "KEEP")}))'


def run(tmp_path: Path, env: dict[str, str]) -> dict[str, str | None]:
    spec = {"program": sys.executable, "args": ["-c", SHOW], "env": env}
    blueprint = {
        "id": "creds",
        "flow": {"kind": "step", "ref": "a", "in": {"op": "lit", "value": None}, "out": {"op": "path", "at": "$.r"}},
        "agents": [{"name": "a", "kind": "subprocess", "spec": spec}],
    }
    (tmp_path / "bp.json").write_text(json.dumps(blueprint))
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--ephemeral", "--json"],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_ADMIN_TOKEN": "admin-secret", "KEEP": "kept"}),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, str | None] = json.loads(proc.stdout)["final_ctx"]["r"]
    return result


def test_a_child_does_not_inherit_the_admin_token(tmp_path: Path) -> None:
    seen = run(tmp_path, {})
    assert seen["MSE_ADMIN_TOKEN"] is None
    assert seen["MSE_TOKEN"] and seen["KEEP"] == "kept"


def test_a_blueprint_may_still_pass_it_on_purpose(tmp_path: Path) -> None:
    assert run(tmp_path, {"MSE_ADMIN_TOKEN": "given"})["MSE_ADMIN_TOKEN"] == "given"
