"""Peak RSS of a run by its length: N sequential steps, each returning a fresh value of a given size.

Each case is a fresh `mse run` (a `bench.blueprints.loop` whose `python` step returns a new string
per step), ephemeral or durable (SQLite, default `batch` durability); the figure is the child's peak
resident set size. Flat across lengths means the process holds what the run's ctx holds, not every
step it finished. `python -m bench` runs `peak_rss` at two lengths (trivial values and 1 MiB values);
this command prints a table over any lengths:

    python -m bench.memory [--steps 100,1000,10000] [--bytes 1048576]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from . import blueprints
from .cli import Finished, mse, mse_env, once
from .harness import Metrics

WORKER = """
import os
BLOB = "x" * {fill}

def value(inv):
    # A fresh string per step, so nothing is shared between steps' values.
    return BLOB + os.urandom(4).hex()
"""


def measure(steps: int, value_bytes: int, durable: bool) -> Finished:
    """One `mse run --json` of `steps` steps each returning `value_bytes` bytes; fails unless it is done."""
    with tempfile.TemporaryDirectory(prefix="mse-bench-memory-") as tmp:
        folder = Path(tmp)
        (folder / "memory_worker.py").write_text(WORKER.format(fill=max(0, value_bytes - 8)))
        agent = {"name": "big", "kind": "python", "spec": {"callable": "memory_worker:value"}}
        (folder / "bp.json").write_text(json.dumps(blueprints.loop(steps, agent)))
        args = ["run", "bp.json", "--json"]
        args += ["--store", str(folder / "runs.sqlite3")] if durable else ["--ephemeral"]
        done = once(mse(*args), mse_env(str(folder / "home")), cwd=folder)
        if json.loads(done.stdout or "{}").get("status") != "done":
            raise RuntimeError(f"the run did not finish: {done.stdout[-500:]}")
        return done


def peak_rss(steps: int, value_bytes: int, durable: bool) -> Metrics:
    """The probe: peak RSS (MB) and wall seconds of one such run."""
    done = measure(steps, value_bytes, durable)
    return {"rss_mb": done.rss_mb, "secs": done.seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="100,1000,10000", help="comma-separated run lengths")
    parser.add_argument("--bytes", type=int, default=1 << 20, help="size of each step's value in bytes")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.steps.split(",")]
    print(f"| Steps of {args.bytes:,} bytes | ephemeral peak RSS [MB] | durable (SQLite) peak RSS [MB] |")
    print("|---|---|---|")
    for steps in lengths:
        ephemeral = measure(steps, args.bytes, durable=False)
        durable = measure(steps, args.bytes, durable=True)
        print(
            f"| {steps:,} | {ephemeral.rss_mb:.0f} ({ephemeral.seconds:.0f} s) | "
            f"{durable.rss_mb:.0f} ({durable.seconds:.0f} s) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
