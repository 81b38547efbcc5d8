"""The package root: one `__all__`, every name in it importable, nothing else promised."""

from __future__ import annotations

import subprocess
import sys

import mlua_swarm


def test_every_exported_name_resolves_and_the_root_promises_nothing_else() -> None:
    assert sorted(mlua_swarm.__all__) == sorted(mlua_swarm._EXPORTS)
    for name in mlua_swarm.__all__:
        assert getattr(mlua_swarm, name) is not None
    assert {"Run", "run_blueprint", "compile_blueprint", "open_store"} <= set(mlua_swarm.__all__)


def test_importing_the_root_loads_no_layer() -> None:
    # Only the helper that imports the re-exported names on first use (`mlua_swarm.lazy`).
    code = (
        "import sys, mlua_swarm; "
        "loaded = [m for m in sys.modules if m.startswith('mlua_swarm.')]; "
        "assert loaded == ['mlua_swarm.lazy'], loaded"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
