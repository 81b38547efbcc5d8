"""A store that cannot be written (a full disk) stops the run as interrupted, resumable once it can be (item 16).

The full disk is SQLite's own: `PRAGMA max_page_count` set to the file's current size makes every
write that needs a new page fail with SQLITE_FULL, exactly as a full file system does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from mlua_swarm.run import Run
from mlua_swarm.store import RunStatus, open_store

from ..conftest import mse_env

STEPS = 8

BP: dict[str, Any] = {
    "id": "full",
    "flow": {
        "kind": "loop",
        "counter": {"op": "path", "at": "$.n"},
        "cond": {"op": "lit", "value": True},
        "max": STEPS,
        "body": {"kind": "step", "ref": "s", "in": {"op": "path", "at": "$.n"}, "out": {"op": "path", "at": "$.last"}},
    },
    "agents": [{"name": "s", "kind": "python", "spec": {"callable": "fillmod:fill"}}],
}

FILLMOD = textwrap.dedent(
    """
    STORE = None
    CALLS = []

    async def fill(inv):
        CALLS.append(inv.input)
        if STORE is not None and inv.input == 3:
            # From here on the store may not grow: the disk is full.
            pages = STORE._conn.execute("PRAGMA page_count").fetchone()[0]
            STORE._conn.execute(f"PRAGMA max_page_count = {pages}")
        return "x" * 200_000
    """
)

FILLING = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    import fillmod
    from mlua_swarm.blueprint.compiler import compile_blueprint
    from mlua_swarm.run import Run, Workspace, launch_options
    from mlua_swarm.store import LaunchSnapshot, StoreError, open_store

    async def main():
        store = fillmod.STORE = await open_store(sys.argv[1])
        bp, here = json.loads(sys.argv[2]), Path.cwd()
        compiled = compile_blueprint(bp, base_dir=here)
        launch = LaunchSnapshot(bp, {}, launch_options(Workspace(), base_dir=here, fns={}, source=None))
        try:
            async with Run(compiled, store=store, launch=launch) as run:
                await run.execute({})
        except StoreError as exc:
            print(json.dumps({"run_id": run.run_id, "code": exc.code, "message": exc.message}))
        finally:
            try:
                await store.close()
            except StoreError:
                pass

    asyncio.run(main())
    """
)


async def test_a_full_disk_interrupts_the_run_and_it_resumes_once_space_is_back(tmp_path: Path) -> None:
    (tmp_path / "fillmod.py").write_text(FILLMOD)
    path = tmp_path / "runs.sqlite3"
    proc = subprocess.run(
        [sys.executable, "-c", FILLING, str(path), json.dumps(BP)],
        capture_output=True,
        text=True,
        env=mse_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    stopped = json.loads(proc.stdout)
    assert stopped["code"] == "store_write_failed"
    assert str(path) in stopped["message"] and "full" in stopped["message"]

    store = await open_store(str(path))
    try:
        assert (await store.get_run(stopped["run_id"])).status is RunStatus.INTERRUPTED
        async with await Run.resume(store, stopped["run_id"]) as run:
            result = await run.execute()
    finally:
        await store.close()
    assert result.status == "done", result.to_json()
    assert result.final_ctx["n"] == STEPS
    import fillmod  # type: ignore[import-not-found]  # the Blueprint's module, importable from its folder

    assert fillmod.STORE is None and fillmod.CALLS and fillmod.CALLS[0] >= 3
