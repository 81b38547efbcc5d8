"""Per-step cost of a step whose input is one large JSON object, in memory.

`python -m bench.big_input [--keys N] [--steps N] [--repeat N]` runs a `loop` of `rust_fn` steps
whose input is `$.big` (N keys of small objects, about 150 bytes each) and prints the median and
minimum milliseconds per step over the repetitions, with the input's size and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .machine import load


async def count_keys(inv: Any) -> int:
    """Reads the whole input, as an agent looking at its prompt would."""
    return len(inv.input)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.big_input", description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import orjson

    from mlua_swarm.blueprint.compiler import compile_blueprint
    from mlua_swarm.run import Run

    big = {f"k{i}": {"text": "x" * 100, "n": i, "tags": ["a", "b", "c"]} for i in range(args.keys)}
    step = {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.big"}, "out": {"op": "path", "at": "$.v"}}
    raw = {
        "id": "big-input",
        "flow": {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.n"},
            "max": args.steps,
            "cond": {"op": "lit", "value": True},
            "body": step,
        },
        "agents": [{"name": "a", "kind": "rust_fn", "spec": {"fn_id": "keys"}}],
    }
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns={"keys": count_keys})

    async def once() -> float:
        async with Run(compiled) as run:
            started = time.perf_counter()
            result = await run.execute({"big": big})
            if result.status != "done":
                raise SystemExit(f"run ended {result.status}: {result.error}")
            return (time.perf_counter() - started) / args.steps * 1000

    print(f"at start: {load()}; input {len(orjson.dumps(big)) / 1e6:.2f} MB")
    ms = [asyncio.run(once()) for _ in range(args.repeat)]
    print(f"in-memory step with that input: {statistics.median(ms):.1f} ms (min {min(ms):.1f})")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
