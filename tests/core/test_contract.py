"""The engine's contract lives in `core`; the public names stay importable from `mlua_swarm.worker`."""

from __future__ import annotations

import subprocess
import sys

import mlua_swarm.worker as worker
import mlua_swarm.worker.adapter as adapter
import mlua_swarm.worker.errors as worker_errors
import mlua_swarm.worker.output as worker_output
from mlua_swarm.core import contract, output


def test_the_worker_package_re_exports_the_contract_objects_themselves() -> None:
    for name in ("Worker", "WorkerCancelled", "WorkerError", "WorkerFailed"):
        assert getattr(worker, name) is getattr(contract, name)
    for name in ("SpawnerAdapter", "SpawnError", "NotRegistered", "RejectedByMiddleware", "SpawnInternalError"):
        assert getattr(adapter, name) is getattr(contract, name)
        if name != "SpawnerAdapter":
            assert getattr(worker_errors, name) is getattr(contract, name)
    for name in output.__all__:
        assert getattr(worker_output, name) is getattr(output, name)


def test_the_engine_imports_without_the_worker_package() -> None:
    code = (
        "import sys\n"
        "import mlua_swarm.core.engine, mlua_swarm.core.fold\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('mlua_swarm.worker'))\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
