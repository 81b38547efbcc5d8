"""Per-step cost of a step whose input is one large JSON object, in memory and durable.

A `bench.blueprints.loop` of `rust_fn` steps whose input is `$.big` (N keys of small objects, about
150 bytes each) run through `Run`, without a store or on a fresh SQLite store (`batch`); then the
same with a step that returns its input, so its result is as large (checked as JSON data, and
stored when durable). The floor is one orjson encode and decode of the same object (what a copy of
the input costs).
`python -m bench.big_input [--keys N] [--steps N] [--repeat N]` prints both, with the input's size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import blueprints
from .harness import REPO_ROOT, Metrics, needs
from .machine import load

KEY_BYTES = 148
"""About what one key of `big_object` weighs encoded."""


def big_object(keys: int) -> dict[str, Any]:
    return {f"k{i}": {"text": "x" * 100, "n": i, "tags": ["a", "b", "c"]} for i in range(keys)}


async def count_keys(inv: Any) -> int:
    """Reads the whole input, as an agent looking at its prompt would."""
    return len(inv.input)


async def echo(inv: Any) -> Any:
    """Hands its input back: the step's result is the large object (checked, and stored when durable)."""
    return inv.input


def per_step_ms(keys: int, steps: int, reps: int, durable: bool = False, echoed: bool = False) -> Metrics:
    """Milliseconds per step of the loop whose every step takes the `keys`-key object as input
    (`echoed`: and returns it, so its result is that large too)."""
    compiler = needs("mlua_swarm.blueprint.compiler", ours=True)
    run_layer = needs("mlua_swarm.run", ours=True)
    store_mod = needs("mlua_swarm.store", ours=True)
    agent = {"name": "a", "kind": "rust_fn", "spec": {"fn_id": "fn"}}
    raw = blueprints.loop(steps, agent, source="$.big")
    compiled = compiler.compile_blueprint(raw, base_dir=REPO_ROOT, fns={"fn": echo if echoed else count_keys})
    big = big_object(keys)

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        async def once() -> float:
            store = await store_mod.open_store(str(Path(tmp) / f"big-{next(counter)}.sqlite3")) if durable else None
            try:
                async with run_layer.Run(compiled, store=store) as run:
                    started = time.perf_counter()
                    result = await run.execute({"big": big})
                    spent = time.perf_counter() - started
            finally:
                if store is not None:
                    await store.close()
            if result.status != "done":
                raise RuntimeError(f"run ended {result.status}: {result.error}")
            return spent / steps * 1000

        samples = [asyncio.run(once()) for _ in range(reps + 1)][1:]
    return {"ms_per_step": samples}


def copy_ms(keys: int, reps: int) -> Metrics:
    """The floor: one orjson encode and decode of the object, in milliseconds."""
    orjson = needs("orjson", ours=False)
    big = big_object(keys)
    samples = []
    for _ in range(reps * 5 + 1):
        started = time.perf_counter()
        orjson.loads(orjson.dumps(big))
        samples.append((time.perf_counter() - started) * 1000)
    return {"ms": samples[1:]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.big_input", description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"at start: {load()}; input about {args.keys * KEY_BYTES / 1e6:.2f} MB")
    for echoed in (False, True):
        for durable in (False, True):
            ms = per_step_ms(args.keys, args.steps, args.repeat, durable, echoed)["ms_per_step"]
            assert isinstance(ms, list)
            where = "durable (SQLite, batch)" if durable else "in memory"
            what = "and as its result" if echoed else "input"
            print(f"step with that {what}, {where}: {statistics.median(ms):.1f} ms (min {min(ms):.1f})")
    floor = copy_ms(args.keys, args.repeat)["ms"]
    assert isinstance(floor, list)
    print(f"orjson encode + decode of the input: {statistics.median(floor):.1f} ms (min {min(floor):.1f})")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
