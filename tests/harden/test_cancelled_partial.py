"""A cancelled or timed-out run keeps the ctx its finished steps wrote (item 18)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import Run
from mlua_swarm.store import open_store
from mlua_swarm.worker.adapter import WorkerInvocation

from ..conftest import mse_env


def blueprint(agent: str) -> dict[str, Any]:
    def step(ref: str) -> dict[str, Any]:
        return {"kind": "step", "ref": ref, "in": {"op": "lit", "value": ref}, "out": {"op": "path", "at": f"$.{ref}"}}

    return {
        "id": "c",
        "flow": {"kind": "seq", "children": [step("a"), step("b"), step("s")]},
        "agents": [
            {"name": "a", "kind": "rust_fn", "spec": {"fn_id": "quick"}},
            {"name": "b", "kind": "rust_fn", "spec": {"fn_id": "quick"}},
            {"name": "s", "kind": "rust_fn", "spec": {"fn_id": agent}},
        ],
    }


async def test_a_cancelled_run_keeps_its_partial_ctx(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def quick(inv: WorkerInvocation) -> Any:
        return inv.input

    async def stuck(inv: WorkerInvocation) -> Any:
        started.set()
        await asyncio.Event().wait()

    compiled = compile_blueprint(blueprint("stuck"), base_dir=tmp_path, fns={"quick": quick, "stuck": stuck})
    store = await open_store(str(tmp_path / "runs.sqlite3"))
    try:
        async with Run(compiled, store=store) as run:
            execution = asyncio.ensure_future(run.execute({"x": 0}))
            await started.wait()
            run.cancel("enough")
            result = await execution
        stored = await store.get_run(run.run_id)
    finally:
        await store.close()
    assert result.status == "cancelled"
    assert result.partial_ctx == {"x": 0, "a": "a", "b": "b"}
    assert stored.result["partial_ctx"] == {"x": 0, "a": "a", "b": "b"}


def test_mse_run_past_its_timeout_prints_the_partial_ctx(tmp_path: Path) -> None:
    (tmp_path / "workers.py").write_text(
        "import asyncio\n"
        "async def quick(inv):\n    return inv.input\n"
        "async def stuck(inv):\n    await asyncio.sleep(60)\n"
    )
    bp = blueprint("stuck")
    for agent in bp["agents"]:
        agent["kind"], agent["spec"] = "python", {"callable": f"workers:{agent['spec']['fn_id']}"}
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    proc = subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--ephemeral", "--json", "--timeout", "1"],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(tmp_path / "home")}),
        cwd=tmp_path,
        timeout=60,
    )
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed" and "timeout" in doc["error"]["message"]
    assert doc["partial_ctx"] == {"a": "a", "b": "b"}
