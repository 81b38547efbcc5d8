"""`python -m bench.ray_steps [--quick]`: what a `ray` agent step costs over a bare Ray round trip.

A local Ray instance (2 CPUs, no dashboard) started by this process; in the same process and the
same instance, one call of each in turn, of:

1. bare: `ray.get(f.remote(x))` of a trivial remote function, one after another;
2. bare, awaited: `await f.remote(x)` (how the spawner waits: the event loop stays free);
3. engine: one `ray` agent step (`Engine.run_step` with the kind's spawner: worker token, input,
   the invocation rebuilt on the worker, the value checked and folded), one after another;
4. fanout: 100 lanes of a `ray` agent in one in-memory run, against `ray.get` of 100 tasks at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.run.launch import run_blueprint
from mlua_swarm.worker.adapter import WorkerInvocation
from mlua_swarm.worker.kinds import LinkEnv
from mlua_swarm.worker.ray import RayKind

from . import document, machine

TITLE = "Ray agents: a step over a bare Ray round trip"
HERE = Path(__file__).resolve().parent
LANES = 100


def square(inv: WorkerInvocation) -> Any:
    """The agent's function (imported by name on the Ray worker)."""
    return inv.input * inv.input


def bare_square(x: int) -> int:
    return x * x


AGENT = {"name": "square", "kind": "ray", "spec": {"callable": "bench.ray_steps:square"}}


def fanout_blueprint() -> dict[str, Any]:
    return {
        "id": "ray-fanout",
        "flow": {
            "kind": "fanout",
            "items": {"op": "path", "at": "$.xs"},
            "bind": {"op": "path", "at": "$.x"},
            "body": {
                "kind": "step",
                "ref": "square",
                "in": {"op": "path", "at": "$.x"},
                "out": {"op": "path", "at": "$.y"},
            },
            "join": "all",
            "collect": {"op": "path", "at": "$.y"},
            "out": {"op": "path", "at": "$.ys"},
        },
        "agents": [AGENT],
    }


def per_call_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p90": ordered[int(len(ordered) * 0.9)] * 1000,
        "mean": statistics.fmean(ordered) * 1000,
    }


async def measure(steps: int, rounds: int) -> dict[str, Any]:
    import ray

    remote = ray.remote(bare_square)
    engine = Engine()
    op = engine.attach("bench")
    spawner = RayKind().build(AGENT, LinkEnv(base_dir=HERE.parent))
    compiled = compile_blueprint(fanout_blueprint(), base_dir=HERE.parent)
    bare: list[float] = []
    awaited: list[float] = []
    stepped: list[float] = []
    fan_bare: list[float] = []
    fan_run: list[float] = []
    clock = time.perf_counter
    # warm-up: workers started, functions exported, the agent's module imported on the workers
    ray.get([remote.remote(i) for i in range(4)])
    for i in range(4):
        await engine.run_step(op, await engine.start_task(op, TaskSpec("square", i)), spawner)
    for _ in range(rounds):
        for i in range(steps):  # one of each in turn, so a busy moment of the machine hits all three alike
            began = clock()
            ray.get(remote.remote(i))
            bare.append(clock() - began)
            began = clock()
            await remote.remote(i)
            awaited.append(clock() - began)
            began = clock()
            step = await engine.start_task(op, TaskSpec("square", i))
            outcome = await engine.run_step(op, step, spawner)
            stepped.append(clock() - began)
            assert outcome.value == i * i
        began = clock()
        ray.get([remote.remote(i) for i in range(LANES)])
        fan_bare.append(clock() - began)
        began = clock()
        result = await run_blueprint(compiled, {"xs": list(range(LANES))})
        fan_run.append(clock() - began)
        assert result.status == "done", result.error
    return {
        "steps": steps * rounds,
        "bare": per_call_ms(bare),
        "awaited": per_call_ms(awaited),
        "step": per_call_ms(stepped),
        "fan_bare_ms": statistics.median(fan_bare) * 1000,
        "fan_run_ms": statistics.median(fan_run) * 1000,
    }


def body(found: dict[str, Any]) -> str:
    bare, awaited, step = found["bare"], found["awaited"], found["step"]

    def row(name: str, figures: dict[str, float]) -> str:
        return f"| {name} | {figures['p50']:.2f} ms | {figures['p90']:.2f} ms | {figures['mean']:.2f} ms |"

    return "\n".join(
        [
            "A local Ray instance (2 CPUs, no dashboard) started by the benchmark's process; a trivial function "
            f"(`x * x`), {found['steps']:,} sequential calls of each kind, one of each in turn.",
            "",
            "| Case | p50 | p90 | mean |",
            "|---|---|---|---|",
            row("bare: `ray.get(f.remote(x))`", bare),
            row("bare, awaited: `await f.remote(x)`", awaited),
            row("`ray` agent step: `Engine.run_step` (token, invocation, value checked and folded)", step),
            f"| engine's share of a step (p50 step minus p50 bare) | {step['p50'] - bare['p50']:.2f} ms | | |",
            "",
            f"Fanout of {LANES} lanes: `ray.get` of {LANES} tasks at once {found['fan_bare_ms']:.0f} ms; "
            f"an in-memory run of a {LANES}-lane fanout of a `ray` agent {found['fan_run_ms']:.0f} ms (medians).",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 calls of each kind, one round")
    parser.add_argument("--write", metavar="PATH", type=Path, help="put the results in PATH (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.write is not None:
        document.check_writable(args.write, whole=False)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    try:
        load_start = machine.load_now()
        found = asyncio.run(measure(100 if args.quick else 300, 1 if args.quick else 3))
    finally:
        ray.shutdown()
    text = body(found)
    print(text)
    if args.write is not None:
        command = document.command_line("python -m bench.ray_steps", argv)
        section = document.measured_section("ray", TITLE, text, command, load_start, machine.load_now())
        document.write_section(args.write, section, command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
