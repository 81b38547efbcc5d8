"""`mse run --server` when the server stops under the run: the run is interrupted there, and the
client says so (exit 130, "resume it") instead of reporting an unreachable server."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from tests.conftest import start_mse, wait_for_file
from tests.serverkit import spawn_mse_serve


def test_a_server_stopping_mid_run_reads_as_an_interrupted_run(tmp_path: Path) -> None:
    started = tmp_path / "started"
    script = tmp_path / "hold.py"
    script.write_text(
        f"import pathlib, sys, time\nsys.stdin.read()\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n"
    )
    bp = tmp_path / "hold.json"
    first = {"kind": "step", "ref": "a", "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.a"}}
    hold = {"kind": "step", "ref": "hold", "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.h"}}
    agents = [
        {"name": "a", "kind": "lua", "spec": {"source": "return 'A'"}},
        {"name": "hold", "kind": "subprocess", "spec": {"program": sys.executable, "args": [str(script)]}},
    ]
    bp.write_text(json.dumps({"id": "hold", "flow": {"kind": "seq", "children": [first, hold]}, "agents": agents}))
    env = {"MSE_HOME": str(tmp_path / "home"), "MSE_HTTP": "", "MSE_ADMIN_TOKEN": ""}
    served = spawn_mse_serve(["--bind", "127.0.0.1:0"], env=env)
    try:
        client = start_mse(["run", str(bp), "--server", served.base_url, "--json"], env=env)
        assert client.stderr is not None
        seen = [client.stderr.readline() for _ in range(2)]
        assert "✓ a passed" in seen[1], seen
        wait_for_file(started, client)
        served.terminate(signal.SIGTERM)
        out, err = client.communicate(timeout=60)
    finally:
        served.terminate(signal.SIGKILL)
    assert client.returncode == 130, err
    document = json.loads(out)
    assert document["status"] == "cancelled"
    assert document["error"]["message"] == "the server stopped before the run ended; resume it"
    assert "server-unreachable" not in err and "Traceback" not in err
