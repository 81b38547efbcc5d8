"""`python -m bench.profile [--steps N] [--top K]`: where our in-memory sequential step spends its time.

Runs the engine-level sequence of trivial Python steps (the `seq` workload, engine only) under
cProfile and prints the top functions by own time, then by cumulative time. cProfile inflates
call-heavy code, so read the ranking, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from typing import Any

from .agents import inc


async def _sequence(steps: int) -> None:
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
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    asyncio.run(_sequence(1000))
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, _sequence(args.steps))
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
