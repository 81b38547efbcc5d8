"""A Python child finds `mlua_swarm.child` even when run by an interpreter without the package."""

import os
import shutil
import sys
from pathlib import Path

from mlua_swarm import Engine, TaskSpec
from mlua_swarm.worker.process import ProcessSpawner

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")


async def test_a_child_outside_the_venv_imports_the_helper(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text("from mlua_swarm import child\nchild.final({'echo': child.read_input(), 'ok': 1})\n")
    assert SYSTEM_PYTHON is not None and Path(SYSTEM_PYTHON).resolve() != Path(sys.executable).resolve()
    engine = Engine()
    op = engine.attach("op")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    spawner = ProcessSpawner(SYSTEM_PYTHON, [str(script)], stream_mode="ndjson_lines", env=env)
    step = await engine.start_task(op, TaskSpec("c", {"n": 1}))
    outcome = await engine.run_step(op, step, spawner)
    assert outcome.kind == "pass" and outcome.value == {"echo": {"n": 1}, "ok": 1}
