"""A grandchild that calls setsid() leaves the step's process group but not the step (item 19)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ..conftest import alive, mse_env

CHILD = textwrap.dedent(
    """
    import subprocess, sys
    grandchild = (
        "import os, sys, time\\n"
        "os.setsid()\\n"
        "if os.fork():\\n"
        "    os._exit(0)\\n"
        "print(os.getpid(), flush=True)\\n"
        "os.close(1)\\n"
        "time.sleep(120)\\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", grandchild], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    with open(sys.argv[1], "w") as f:
        f.write(daemon.stdout.readline().decode().strip())
    daemon.wait()
    print('{"ok": true}')
    """
)


def test_a_daemonized_grandchild_does_not_outlive_its_step(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(CHILD)
    pidfile = tmp_path / "grandchild.pid"
    bp = {
        "id": "g",
        "flow": {"kind": "step", "ref": "s", "in": {"op": "lit", "value": ""}, "out": {"op": "path", "at": "$.r"}},
        "agents": [
            {
                "name": "s",
                "kind": "subprocess",
                "spec": {"program": sys.executable, "args": [str(tmp_path / "child.py"), str(pidfile)]},
            }
        ],
    }
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--ephemeral", "--json"],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(tmp_path / "home")}),
        cwd=tmp_path,
        timeout=60,
    )
    pid = int(pidfile.read_text())
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["final_ctx"] == {"r": {"ok": True}}
        assert not alive(pid), f"the grandchild {pid} survived its step"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
