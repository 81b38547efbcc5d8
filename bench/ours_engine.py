"""Our side driven at the engine level: `start_task` + `dispatch_attempt` per step, no flow evaluator.

This is what a "sequential flow of N trivial steps" costs in the engine itself (token mint and
verify, state machine, spawn, join, output fold) before the flow runtime and store add their part.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .agents import inc
from .children import child_argv
from .harness import Metrics, Unavailable, needs
from .timing import peak_rss_mb, per_unit_us_async, rss_mb, stopwatch


def _engine_parts() -> tuple[Any, Any]:
    engine_mod = needs("mlua_swarm.core.engine", ours=True)
    adapter_mod = needs("mlua_swarm.worker.adapter", ours=True)
    return engine_mod, adapter_mod


async def _run_sequence(
    engine_mod: Any, spawner: Any, agent: str, first: Any, n: int, engine: Any = None
) -> tuple[float, Any]:
    """Dispatch `n` steps one after another, each step's output the next one's input."""
    engine = engine or engine_mod.Engine()
    token = engine.attach("bench")
    elapsed = stopwatch()
    value = first
    for _ in range(n):
        step_id = await engine.start_task(token, engine_mod.TaskSpec(agent, value))
        outcome = await engine.dispatch_attempt(token, step_id, spawner)
        if outcome.kind != "pass":
            raise RuntimeError(f"step {step_id} ended {outcome.kind}: {outcome.value!r}")
        value = outcome.value
    return elapsed(), value


def seq_memory(n: int, reps: int) -> Metrics:
    """`n` trivial async Python steps (an `InProcSpawner` function adding one) one after another."""
    engine_mod, adapter_mod = _engine_parts()
    spawner = adapter_mod.InProcSpawner().register("inc", inc)

    async def once() -> float:
        spent, value = await _run_sequence(engine_mod, spawner, "inc", 0, n)
        assert value == n
        return spent

    return {"us_per_step": per_unit_us_async(once, n, reps)}


class _Run:
    """The run a linked stack serves; nothing here ever cancels it."""

    run_id = None

    def cancel(self, reason: str) -> None:
        raise RuntimeError(f"the benchmark run was cancelled: {reason}")


def stack_overhead(n: int, reps: int) -> Metrics:
    """Per-step cost of the stack `middleware.link` builds for a Blueprint that configures no layers.

    Each repetition runs `n` steps through the bare `InProcSpawner`, then `n` through the linked
    stack, in this process, so the difference is not skewed by load changing between probes.
    """
    engine_mod, adapter_mod = _engine_parts()
    middleware = needs("mlua_swarm.middleware.link", ours=True)
    blueprint = {"agents": [{"name": "inc", "kind": "python", "spec": {"callable": "bench.agents:inc"}}]}
    base = adapter_mod.InProcSpawner().register("inc", inc)

    async def bare() -> float:
        spent, _ = await _run_sequence(engine_mod, base, "inc", 0, n)
        return spent

    async def linked() -> float:
        engine = engine_mod.Engine()
        stack, _ = middleware.link(base, blueprint, engine, run=_Run())
        async with stack:
            spent, _ = await _run_sequence(engine_mod, stack, "inc", 0, n, engine)
        return spent

    bare_us: list[float] = []
    linked_us: list[float] = []
    asyncio.run(bare())
    asyncio.run(linked())
    for _ in range(2 * reps):
        bare_us.append(asyncio.run(bare()) / n * 1e6)
        linked_us.append(asyncio.run(linked()) / n * 1e6)
    return {
        "overhead_us": [lk - b for lk, b in zip(linked_us, bare_us, strict=True)],
        "linked_us": linked_us,
        "bare_us": bare_us,
    }


def kind_seq(kind: str, spec: dict[str, Any], first: Any, n: int, reps: int) -> Metrics:
    """`n` sequential steps of an agent of `kind` built from `spec` the way a Blueprint builds it."""
    return {"us_per_step": _kind_samples(kind, spec, first, n, reps)}


def _kind_samples(kind: str, spec: dict[str, Any], first: Any, n: int, reps: int) -> list[float]:
    engine_mod, _ = _engine_parts()
    kinds = needs("mlua_swarm.worker.kinds", ours=True)
    builder = kinds.agent_kind(kind)
    if builder is None:
        raise Unavailable(f"not available yet (no agent kind {kind!r} on this branch)")
    spawner = builder.build({"name": "bench", "kind": kind, "spec": spec}, kinds.LinkEnv())

    async def once() -> float:
        spent, _ = await _run_sequence(engine_mod, spawner, "bench", first, n)
        return spent

    return per_unit_us_async(once, n, reps)


def subprocess_seq(child: str, n: int, reps: int) -> Metrics:
    """`n` sequential cold subprocess steps (kind `subprocess`, plain mode) running `child`."""
    argv = child_argv(child)
    samples = _kind_samples("subprocess", {"program": argv[0], "args": argv[1:]}, {"i": 1}, n, reps)
    return {"ms_per_step": [us / 1000 for us in samples]}


def fanout(lanes: int, reps: int) -> Metrics:
    """`lanes` trivial steps started together and all joined (`asyncio.gather` of dispatches)."""
    engine_mod, adapter_mod = _engine_parts()

    async def once() -> float:
        engine = engine_mod.Engine()
        token = engine.attach("bench")
        spawner = adapter_mod.InProcSpawner().register("inc", inc)

        async def lane(i: int) -> int:
            step_id = await engine.start_task(token, engine_mod.TaskSpec("inc", i))
            outcome = await engine.dispatch_attempt(token, step_id, spawner)
            result: int = outcome.value
            return result

        elapsed = stopwatch()
        results = await asyncio.gather(*(lane(i) for i in range(lanes)))
        spent = elapsed()
        assert results == [i + 1 for i in range(lanes)]
        return spent

    return {"us_per_lane": per_unit_us_async(once, lanes, reps)}


def sleeping_rss(steps: int) -> Metrics:
    """Resident memory with `steps` dispatched steps in flight at once, each parked on one event."""
    engine_mod, adapter_mod = _engine_parts()
    baseline = rss_mb()

    async def run() -> None:
        engine = engine_mod.Engine()
        token = engine.attach("bench")
        gate = asyncio.Event()
        started = 0

        async def park(inv: Any) -> int:
            nonlocal started
            started += 1
            await gate.wait()
            return 1

        spawner = adapter_mod.InProcSpawner().register("park", park)
        ids = [await engine.start_task(token, engine_mod.TaskSpec("park", i)) for i in range(steps)]
        lanes = [asyncio.create_task(engine.dispatch_attempt(token, sid, spawner)) for sid in ids]
        while started < steps:
            await asyncio.sleep(0.01)
        gate.set()
        outcomes = await asyncio.gather(*lanes)
        assert all(o.kind == "pass" for o in outcomes)

    asyncio.run(run())
    return {"rss_mb": peak_rss_mb(), "baseline_mb": baseline}
