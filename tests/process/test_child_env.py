"""A child's environment: this process's, then the `MSE_*` variables, then the agent's `env`, and
PYTHONPATH ending in the package's folder; variables that are not valid UTF-8 pass through unchanged."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

import mlua_swarm
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.process import ProcessSpawner

from ..conftest import run_one

DUMP = "import os, sys; sys.stdout.write(repr(sorted(os.environb.items())))"
PACKAGE_PARENT = str(Path(mlua_swarm.__file__).resolve().parents[1])


async def test_the_child_sees_this_environment_plus_its_own(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(os.environb, b"MSE_TEST_RAW", b"caf\xe9 \xff")
    monkeypatch.setenv("MSE_TEST_PLAIN", "inherited")
    monkeypatch.setenv("MSE_TEST_OVERRIDDEN", "inherited")
    monkeypatch.setenv("PYTHONPATH", "/first/path")
    spawner = ProcessSpawner(sys.executable, ["-c", DUMP], env={"MSE_TEST_OVERRIDDEN": "the agent's", "EXTRA": "é"})
    outcome = await run_one(engine, op, spawner, TaskSpec("env", {"n": 1}))
    assert outcome.kind == "pass", outcome.value
    seen = dict(ast.literal_eval(outcome.value["raw"]))
    assert seen[b"MSE_TEST_RAW"] == b"caf\xe9 \xff"
    assert seen[b"MSE_TEST_PLAIN"] == b"inherited"
    assert seen[b"MSE_TEST_OVERRIDDEN"] == b"the agent's"
    assert seen[b"EXTRA"] == "é".encode()
    assert seen[b"PYTHONPATH"] == f"/first/path{os.pathsep}{PACKAGE_PARENT}".encode()
    assert seen[b"MSE_TASK_ID"].startswith(b"ST-") and seen[b"MSE_TOKEN"]
    unchanged = {k: v for k, v in os.environb.items() if k not in (b"PYTHONPATH", b"MSE_TEST_OVERRIDDEN")}
    assert {k: seen.get(k) for k in unchanged} == unchanged


async def test_without_pythonpath_the_child_gets_the_package_folder(
    engine: Engine, op: CapToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    outcome = await run_one(engine, op, ProcessSpawner(sys.executable, ["-c", DUMP]), TaskSpec("env", {"n": 1}))
    assert dict(ast.literal_eval(outcome.value["raw"]))[b"PYTHONPATH"] == PACKAGE_PARENT.encode()
