"""Slice D: a worker's BaseException, blocking the loop, NaN and oversized values fail its attempt;
what the engine keeps grows with what a run produces, not with how long it runs."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from bench.blueprints import loop

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.run import Run
from mlua_swarm.store import open_store
from mlua_swarm.worker.adapter import InProcSpawner, WorkerInvocation
from mlua_swarm.worker.output import Progress
from mlua_swarm.worker.streams import Malformed, decode_event

from ..conftest import mse_env, run_one

WORKERS = """
import sys, time

def exit3(inv):
    sys.exit(3)

async def interrupt(inv):
    raise KeyboardInterrupt

def nan(inv):
    return {"score": float("nan")}

def infinite(inv):
    return [1, float("inf")]

def a_set(inv):
    return {1, 2}
"""


def mse_run(tmp_path: Path, callable_name: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "workers.py").write_text(WORKERS)
    bp = {
        "id": "w",
        "flow": {"kind": "step", "ref": "s", "in": {"op": "path", "at": "$"}, "out": {"op": "path", "at": "$.r"}},
        "agents": [{"name": "s", "kind": "python", "spec": {"callable": f"workers:{callable_name}"}}],
    }
    (tmp_path / "bp.json").write_text(json.dumps(bp))
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--ephemeral", "--json"],
        capture_output=True,
        text=True,
        env=mse_env({"MSE_HOME": str(tmp_path / "home")}),
        cwd=tmp_path,
        timeout=60,
    )


def strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in the output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("exit3", "SystemExit: 3"),
        ("interrupt", "KeyboardInterrupt"),
        ("nan", "NaN"),
        ("infinite", "NaN or an infinity"),
        ("a_set", "not JSON data"),
    ],
)
def test_a_bad_worker_fails_its_step_with_a_result_document(tmp_path: Path, name: str, words: str) -> None:
    proc = mse_run(tmp_path, name)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    doc = strict_json(proc.stdout)
    assert doc["status"] == "failed"
    assert words in doc["error"]["message"]


async def blocks_at_once(inv: WorkerInvocation) -> str:
    time.sleep(1.2)
    return "late"


async def blocks_after_awaiting(inv: WorkerInvocation) -> str:
    await asyncio.sleep(0)
    time.sleep(1.2)
    return "late"


@pytest.mark.parametrize("fn", [blocks_at_once, blocks_after_awaiting])
async def test_a_worker_blocking_the_loop_past_its_deadline_times_out(engine: Engine, op: Any, fn: Any) -> None:
    step = await engine.start_task(op, TaskSpec("b", timeout_secs=0.3))
    outcome = await engine.run_step(op, step, InProcSpawner().register("b", fn))
    assert outcome.kind == "timeout"
    warnings = engine.worker_stats(step, 1)["warnings"]
    assert len(warnings) == 1 and re.fullmatch(r"blocked the event loop for 1\.\d s", warnings[0])


async def test_a_short_block_within_the_deadline_passes_without_warning(engine: Engine, op: Any) -> None:
    async def brief(inv: WorkerInvocation) -> str:
        time.sleep(0.05)
        return "ok"

    step = await engine.start_task(op, TaskSpec("b", timeout_secs=5))
    outcome = await engine.run_step(op, step, InProcSpawner().register("b", brief))
    assert (outcome.kind, outcome.value) == ("pass", "ok")
    assert "warnings" not in engine.worker_stats(step, 1)


async def test_an_oversized_in_process_value_fails_the_attempt(engine: Engine, op: Any) -> None:
    def huge(inv: WorkerInvocation) -> str:
        return "x" * (17 << 20)

    with pytest.raises(DispatchFailed, match="larger than 16 MiB"):
        await run_one(engine, op, InProcSpawner().register("h", huge), TaskSpec("h"))


async def test_the_value_cap_is_configurable() -> None:
    engine = Engine(EngineConfig(max_value_bytes=1000))
    op = engine.attach("op")

    def nested(inv: WorkerInvocation) -> Any:
        return {"items": ["y" * 100] * int(inv.input)}

    spawner = InProcSpawner().register("n", nested)
    assert (await run_one(engine, op, spawner, TaskSpec("n", 5))).kind == "pass"
    with pytest.raises(DispatchFailed, match="larger than 1000 bytes"):
        await run_one(engine, op, spawner, TaskSpec("n", 20))


async def test_a_progress_flood_keeps_a_bounded_tail() -> None:
    engine = Engine(EngineConfig(tail_transient_events=100))
    op = engine.attach("op")
    lengths: list[int] = []

    async def chatty(inv: WorkerInvocation) -> str:
        assert inv.sink is not None
        for i in range(5000):
            await inv.sink.emit(Progress("working", str(i)))
            lengths.append(len(engine.output_tail(inv.task_id, inv.attempt)))
        return "done"

    outcome = await run_one(engine, op, InProcSpawner().register("c", chatty), TaskSpec("c"))
    assert (outcome.kind, outcome.value) == ("pass", "done")
    assert max(lengths) == 100 and lengths[-1] >= 50


class Big(dict[str, str]):
    """A JSON object that can be weakly referenced, to see when the run lets go of it."""


@pytest.mark.parametrize("durable", [False, True])
async def test_finished_steps_outputs_are_not_held_by_the_engine(tmp_path: Path, durable: bool) -> None:
    produced: list[weakref.ref[Big]] = []
    alive_during: list[int] = []

    async def big(inv: WorkerInvocation) -> Big:
        alive_during.append(sum(ref() is not None for ref in produced))
        value = Big(blob="x" * 4096)
        produced.append(weakref.ref(value))
        return value

    raw = loop(60, {"name": "s", "kind": "rust_fn", "spec": {"fn_id": "big"}})
    compiled = compile_blueprint(raw, base_dir=tmp_path, fns={"big": big})
    engine = Engine()
    store = await open_store(str(tmp_path / "runs.sqlite3")) if durable else None
    try:
        async with Run(compiled, store=store, engine=engine) as run:
            result = await run.execute({})
    finally:
        if store is not None:
            await store.close()
    assert result.status == "done"
    # Only the ctx's current value (and the one being replaced) may be alive at any time.
    assert max(alive_during) <= 2
    assert sum(ref() is not None for ref in produced) <= 1


@pytest.mark.parametrize("number", [b"NaN", b"-Infinity", b"1e999"])
def test_a_child_final_with_a_non_finite_number_is_malformed(number: bytes) -> None:
    frame = b'{"type":"final","content":{"kind":"inline","value":' + number + b'},"ok":true}'
    item = decode_event(1, frame)
    assert isinstance(item, Malformed) and "not JSON" in item.reason
