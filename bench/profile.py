"""`python -m bench.profile [--engine] [--steps N] [--top K]`: where our in-memory sequential step spends time.

Runs the `seq` workload (a Blueprint `loop` of trivial Python steps through `run_blueprint`, or with
`--engine` the same steps straight through the engine) under cProfile and prints the top functions
by own time, then by cumulative time. cProfile inflates call-heavy code, so read the ranking, not
the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from typing import Any

from . import blueprints
from .agents import inc
from .harness import REPO_ROOT


async def _blueprint_sequence(steps: int) -> None:
    from mlua_swarm.blueprint.compiler import compile_blueprint
    from mlua_swarm.run import run_blueprint

    compiled = compile_blueprint(blueprints.sequence(steps), base_dir=REPO_ROOT, fns={})
    result = await run_blueprint(compiled)
    if result.status != "done":
        raise RuntimeError(f"run ended {result.status}: {result.error}")


async def _engine_sequence(steps: int) -> None:
    from mlua_swarm.core.engine import Engine, TaskSpec
    from mlua_swarm.worker.adapter import InProcSpawner

    engine = Engine()
    token = engine.attach("profile")
    spawner: Any = InProcSpawner().register("inc", inc)
    value = 0
    for _ in range(steps):
        step_id = await engine.start_task(token, TaskSpec("inc", value))
        value = (await engine.dispatch_attempt(token, step_id, spawner)).value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--engine", action="store_true", help="drive the engine directly, without a Blueprint")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    sequence = _engine_sequence if args.engine else _blueprint_sequence
    asyncio.run(sequence(1000))
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, sequence(args.steps))
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
