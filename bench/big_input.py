"""Per-step cost of a step whose input is one large JSON object, in memory and durable.

A `bench.blueprints.loop` of `rust_fn` steps whose input is `$.big` (N keys of small objects, about
150 bytes each) run through `Run`, without a store or on a fresh SQLite store (`batch`); then the
same with a step that returns its input, so its result is as large (checked as JSON data, and
stored when durable). A step's cost is its marginal cost: two loop lengths run in each repetition
and the difference of their times over the difference of their steps, so what a run pays once
(writing the large init ctx and final ctx of a durable run) cancels out; the shorter run's time
over its steps is reported beside it. The floor is one orjson encode and decode of the same
object (what a copy of the input costs).
`python -m bench.big_input [--keys N] [--steps SHORT,LONG] [--repeat N]` prints them, with the input's size.
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


def per_step_ms(keys: int, steps: tuple[int, int], reps: int, durable: bool = False, echoed: bool = False) -> Metrics:
    """Milliseconds per step of the loop whose every step takes the `keys`-key object as input
    (`echoed`: and returns it, so its result is that large too): `ms_per_step`, the marginal cost
    between the two loop lengths of `steps` run in the same repetition; `ms_per_step_whole`, the
    shorter run's whole time over its steps."""
    compiler = needs("mlua_swarm.blueprint.compiler", ours=True)
    run_layer = needs("mlua_swarm.run", ours=True)
    store_mod = needs("mlua_swarm.store", ours=True)
    agent = {"name": "a", "kind": "rust_fn", "spec": {"fn_id": "fn"}}
    fns = {"fn": echo if echoed else count_keys}
    short, long = steps
    compiled = {
        n: compiler.compile_blueprint(blueprints.loop(n, agent, source="$.big"), base_dir=REPO_ROOT, fns=fns)
        for n in (short, long)
    }
    big = big_object(keys)

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        async def once(n: int) -> float:
            store = await store_mod.open_store(str(Path(tmp) / f"big-{next(counter)}.sqlite3")) if durable else None
            try:
                async with run_layer.Run(compiled[n], store=store) as run:
                    started = time.perf_counter()
                    result = await run.execute({"big": big})
                    spent = time.perf_counter() - started
            finally:
                if store is not None:
                    await store.close()
            if result.status != "done":
                raise RuntimeError(f"run ended {result.status}: {result.error}")
            return spent * 1000

        asyncio.run(once(short))
        marginal, whole = [], []
        for _ in range(reps):
            t_short, t_long = asyncio.run(once(short)), asyncio.run(once(long))
            marginal.append((t_long - t_short) / (long - short))
            whole.append(t_short / short)
    return {"ms_per_step": marginal, "ms_per_step_whole": whole}


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
    parser.add_argument("--steps", default="20,60", help="the two loop lengths, SHORT,LONG")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    short, long = (int(n) for n in args.steps.split(","))
    print(f"at start: {load()}; input about {args.keys * KEY_BYTES / 1e6:.2f} MB")
    for echoed in (False, True):
        for durable in (False, True):
            metrics = per_step_ms(args.keys, (short, long), args.repeat, durable, echoed)
            marginal, whole = metrics["ms_per_step"], metrics["ms_per_step_whole"]
            assert isinstance(marginal, list) and isinstance(whole, list)
            where = "durable (SQLite, batch)" if durable else "in memory"
            what = "and as its result" if echoed else "input"
            print(
                f"step with that {what}, {where}: {statistics.median(marginal):.2f} ms a step "
                f"({long} - {short} steps; min {min(marginal):.2f}); a {short}-step run over its steps "
                f"{statistics.median(whole):.2f} (min {min(whole):.2f})"
            )
    floor = copy_ms(args.keys, args.repeat)["ms"]
    assert isinstance(floor, list)
    print(f"orjson encode + decode of the input: {statistics.median(floor):.1f} ms (min {min(floor):.1f})")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
