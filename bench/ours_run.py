"""Our side as a user runs it: a compiled Blueprint through the run layer (`Run`, `run_blueprint`), or `mse run`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import blueprints
from .crash import crash_then_resume
from .harness import REPO_ROOT, Metrics, Unavailable, needs
from .sqlite_size import db_bytes
from .timing import peak_rss_mb, per_unit_us_async, rss_mb, stopwatch


def _compiled(raw: dict[str, Any]) -> tuple[Any, Any]:
    """The compiled Blueprint and the run-layer module (`Unavailable` until both have landed)."""
    compiler = needs("mlua_swarm.blueprint.compiler", ours=True)
    run = needs("mlua_swarm.run", ours=True)
    return compiler.compile_blueprint(raw, base_dir=REPO_ROOT, fns={}), run


def seq_memory(n: int, reps: int, fn: str = "inc", inline: bool | None = None) -> Metrics:
    """A `loop` of `n` trivial `python` steps (`fn` of bench.agents), run in memory (no store)."""
    compiled, run_layer = _compiled(blueprints.sequence(n, fn, inline))

    async def once() -> float:
        elapsed = stopwatch()
        result = await run_layer.run_blueprint(compiled)
        spent = elapsed()
        if result.status != "done" or result.final_ctx["i"] != n:
            raise RuntimeError(f"run ended {result.status}: {result.error}")
        return spent

    return {"us_per_step": per_unit_us_async(once, n, reps)}


def fanout(lanes: int, reps: int) -> Metrics:
    """A `fanout` of `lanes` trivial `python` steps with join `all`, run in memory."""
    compiled, run_layer = _compiled(blueprints.fanout(list(range(lanes))))

    async def once() -> float:
        elapsed = stopwatch()
        result = await run_layer.run_blueprint(compiled)
        spent = elapsed()
        if result.status != "done" or len(result.final_ctx["lanes"]) != lanes:
            raise RuntimeError(f"run ended {result.status}: {result.error}")
        return spent

    return {"us_per_lane": per_unit_us_async(once, lanes, reps)}


def fanout_durable(lanes: int, reps: int) -> Metrics:
    """The `fanout` of `lanes` trivial steps recorded in a fresh SQLite store per repetition (`batch`).

    Timed as `seq_durable` times its loop: creating the run, every lane's step through the journal, and
    the run's finish.
    """
    store_mod = needs("mlua_swarm.store", ours=True)
    compiled, run_layer = _compiled(blueprints.fanout(list(range(lanes))))
    engine_mod = needs("mlua_swarm.core.engine", ours=True)
    config_mod = needs("mlua_swarm.core.config", ours=True)

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        async def once() -> float:
            opened = await store_mod.open_store(f"sqlite://{Path(tmp) / f'mse-{next(counter)}.sqlite3'}")
            try:
                engine = engine_mod.Engine(config_mod.EngineConfig(token_secret=await opened.token_secret()))
                elapsed = stopwatch()
                async with run_layer.Run(compiled, store=opened, durability="batch", engine=engine) as run:
                    result = await run.execute()
                spent = elapsed()
            finally:
                await opened.close()
            if result.status != "done" or len(result.final_ctx["lanes"]) != lanes:
                raise RuntimeError(f"run ended {result.status}: {result.error}")
            return spent

        return {"us_per_lane": per_unit_us_async(once, lanes, reps)}


def sleeping_rss(lanes: int, sleep_secs: float) -> Metrics:
    """Peak resident memory while a `fanout` holds `lanes` steps that each sleep `sleep_secs`."""
    compiled, run_layer = _compiled(blueprints.fanout([sleep_secs] * lanes, "nap"))
    baseline = rss_mb()

    async def run() -> None:
        result = await run_layer.run_blueprint(compiled)
        if result.status != "done" or len(result.final_ctx["lanes"]) != lanes:
            raise RuntimeError(f"run ended {result.status}: {result.error}")

    asyncio.run(run())
    return {"rss_mb": peak_rss_mb(), "baseline_mb": baseline}


def seq_durable(n: int, reps: int, durability: str, store: str = "sqlite") -> Metrics:
    """The `loop` of `n` steps recorded in a fresh store per repetition, as `mse run` records it.

    `store="memory"` records into the in-memory store (`--store memory://`). Timed: creating the run,
    every step through the journal, and the run's finish (everything is committed when it returns).
    Bytes (SQLite only): the database file afterwards (WAL folded in), per step.
    """
    store_mod = needs("mlua_swarm.store", ours=True)
    compiled, run_layer = _compiled(blueprints.sequence(n))
    engine_mod = needs("mlua_swarm.core.engine", ours=True)
    config_mod = needs("mlua_swarm.core.config", ours=True)
    sizes: list[float] = []

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        async def once() -> float:
            path = Path(tmp) / f"mse-{next(counter)}.sqlite3"
            url = f"sqlite://{path}" if store == "sqlite" else "memory://"
            opened = await store_mod.open_store(url, durability=durability)
            try:
                engine = engine_mod.Engine(config_mod.EngineConfig(token_secret=await opened.token_secret()))
                elapsed = stopwatch()
                async with run_layer.Run(compiled, store=opened, durability=durability, engine=engine) as run:
                    result = await run.execute()
                spent = elapsed()
            finally:
                await opened.close()
            if result.status != "done" or result.final_ctx["i"] != n:
                raise RuntimeError(f"run ended {result.status}: {result.error}")
            if store == "sqlite":
                sizes.append(db_bytes(str(path)) / n)
            return spent

        samples = per_unit_us_async(once, n, reps)
    return {"us_per_step": samples, "bytes_per_step": sizes[-reps:]} if sizes else {"us_per_step": samples}


def _mse(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlua_swarm", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False
    )


def _command_missing(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == 2 and "invalid choice" in proc.stderr


def crash_phase(workdir: str, n: int, kill_at: int | None, phase: str) -> Metrics:
    """One phase of the crash workload: `mse run` the sequence on SQLite under `workdir`, or `mse runs resume` it.

    The resume phase reports the wall time of the `mse runs resume` process alone (finding the run id
    with `mse runs list` first is the benchmark's errand, not part of a user's restart).
    """
    env = dict(os.environ, MSE_HOME=workdir, MSE_BENCH_LOG=str(Path(workdir) / "steps.log"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
    if kill_at is not None:
        env["MSE_BENCH_KILL_AT"] = str(kill_at)
    if phase == "run":
        bp = Path(workdir) / "sequence.json"
        bp.write_text(json.dumps(blueprints.sequence(n, "count")))
        proc = _mse(["run", str(bp), "--json"], env)
        if _command_missing(proc):
            raise Unavailable("not available yet (mse run)")
        if proc.returncode < 0:
            os.kill(os.getpid(), -proc.returncode)
        raise RuntimeError(f"mse run was expected to die in step {kill_at}: exit {proc.returncode}")
    listed = _mse(["runs", "list", "--json"], env)
    if _command_missing(listed):
        raise Unavailable("not available yet (mse runs list / resume)")
    run_id = json.loads(listed.stdout)[0]["run_id"]
    elapsed = stopwatch()
    resumed = _mse(["runs", "resume", run_id, "--json"], env)
    resume_ms = elapsed() * 1000
    doc = json.loads(resumed.stdout) if resumed.stdout.strip() else {}
    if doc.get("status") != "done" or doc["final_ctx"]["i"] != n:
        raise RuntimeError(f"resume did not finish the run: exit {resumed.returncode}: {resumed.stderr[-300:]}")
    return {"final": float(doc["final_ctx"]["i"]), "resume_ms": resume_ms}


def crash_resume(n: int, kill_after: int) -> Metrics:
    """`mse run` a sequence of `n` steps on SQLite, SIGKILLed inside step `kill_after`, then `mse runs resume`."""
    with tempfile.TemporaryDirectory() as tmp:
        return crash_then_resume("bench.ours_run:crash_phase", Path(tmp), n, kill_after)
