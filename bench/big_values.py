"""Per-step cost of steps whose result is large, durable on SQLite, and of reading such a run back.

A `bench.blueprints.loop` of `rust_fn` steps, each returning a text of the given size (what an LLM
agent's answer is: a few KB, sometimes far more), run through `Run` on a fresh SQLite store
(`batch`, as `mse run` records it) and in memory. Then the run is read back on a store opened
afresh: `list_steps` (what `mse runs steps` reads) and `list_replay` (what a resume replays).
`python -m bench.big_values [--sizes 200,1000,...] [--steps N] [--repeat N]` prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from . import blueprints
from .harness import REPO_ROOT, needs
from .machine import load

SIZES = (200, 1_000, 4_000, 16_000, 100_000, 1_500_000)


def text_of(size: int) -> str:
    """A text whose JSON encoding is `size` bytes."""
    return ("lorem ipsum dolor sit amet " * (size // 27 + 1))[: size - 2]


def returning(size: int) -> Callable[[Any], Coroutine[Any, Any, str]]:
    text = text_of(size)

    async def answer(inv: Any) -> str:
        return text

    return answer


def steps_for(size: int, steps: int) -> int:
    """Fewer steps for large values, so a repetition stays under about a second."""
    return max(10, min(steps, 40_000_000 // size))


async def _one(size: int, steps: int, path: Path | None) -> tuple[float, float, float]:
    """Microseconds per step of one run; and, when durable, per row read back by list_steps / list_replay."""
    compiler = needs("mlua_swarm.blueprint.compiler", ours=True)
    run_layer = needs("mlua_swarm.run", ours=True)
    store_mod = needs("mlua_swarm.store", ours=True)
    agent = {"name": "a", "kind": "rust_fn", "spec": {"fn_id": "fn"}}
    raw = blueprints.loop(steps, agent)
    compiled = compiler.compile_blueprint(raw, base_dir=REPO_ROOT, fns={"fn": returning(size)})
    store = None if path is None else await store_mod.open_store(f"sqlite://{path}")
    try:
        async with run_layer.Run(compiled, store=store) as run:
            started = time.perf_counter()
            result = await run.execute({})
            spent = time.perf_counter() - started
    finally:
        if store is not None:
            await store.close()
    if result.status != "done":
        raise RuntimeError(f"run ended {result.status}: {result.error}")
    if path is None:
        return spent / steps * 1e6, 0.0, 0.0
    reader = await store_mod.open_store(f"sqlite://{path}")
    try:
        started = time.perf_counter()
        entries = await reader.list_steps(run.run_id)
        listed = time.perf_counter() - started
        started = time.perf_counter()
        replay = await reader.list_replay(run.run_id)
        replayed = time.perf_counter() - started
    finally:
        await reader.close()
    if len(entries) != steps or len(replay) != steps or replay[-1].value != text_of(size):
        raise RuntimeError("the run did not read back as written")
    return spent / steps * 1e6, listed / steps * 1e6, replayed / steps * 1e6


def measure(size: int, steps: int, reps: int) -> dict[str, float]:
    """Medians over `reps` runs (after one warm-up) of each figure `_one` gives, in memory and durable."""
    n = steps_for(size, steps)
    figures: dict[str, list[float]] = {"memory": [], "durable": [], "list_steps": [], "list_replay": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps + 1):
            memory, _, _ = asyncio.run(_one(size, n, None))
            durable, listed, replayed = asyncio.run(_one(size, n, Path(tmp) / f"big-{rep}.sqlite3"))
            if rep:
                for key, value in zip(figures, (memory, durable, listed, replayed), strict=True):
                    figures[key].append(value)
    return {key: statistics.median(values) for key, values in figures.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.big_values", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"at start: {load()}")
    print("| value bytes | in memory µs/step | durable µs/step | list_steps µs/row | list_replay µs/row |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        got = measure(size, args.steps, args.repeat)
        print(
            f"| {size:,} | {got['memory']:.1f} | {got['durable']:.1f} | {got['list_steps']:.2f} |"
            f" {got['list_replay']:.1f} |",
            flush=True,
        )
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
