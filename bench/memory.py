"""Peak RSS of a run by its length: N sequential steps, each returning a fresh 1 MiB string.

Each case runs in a fresh interpreter (`mse run` on a generated Blueprint), ephemeral and durable
(SQLite, default `batch` durability), and reports the child's peak resident set size. Flat means
the engine holds what the run's ctx holds, not every step it finished.

    python -m bench.memory [--steps 100,1000,10000] [--mib 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = """
import os
BLOB = "x" * ({mib} << 20)

def value(inv):
    # A fresh string per step, so nothing is shared between steps' values.
    return BLOB[:-8] + os.urandom(4).hex()
"""


def blueprint(steps: int) -> dict[str, object]:
    return {
        "id": "memory",
        "flow": {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.n"},
            "cond": {"op": "lit", "value": True},
            "max": steps,
            "body": {
                "kind": "step",
                "ref": "big",
                "in": {"op": "lit", "value": "go"},
                "out": {"op": "path", "at": "$.value"},
            },
        },
        "agents": [{"name": "big", "kind": "python", "spec": {"callable": "memory_worker:value"}}],
    }


def measure(steps: int, mib: int, durable: bool) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one `mse run` of `steps` steps."""
    with tempfile.TemporaryDirectory(prefix="mse-bench-memory-") as tmp:
        folder = Path(tmp)
        (folder / "memory_worker.py").write_text(WORKER.format(mib=mib))
        (folder / "bp.json").write_text(json.dumps(blueprint(steps)))
        args = [sys.executable, "-m", "mlua_swarm", "run", "bp.json", "--json"]
        args += ["--store", str(folder / "runs.sqlite3")] if durable else ["--ephemeral"]
        probe = (
            "import resource, runpy, sys\n"
            f"sys.argv = {['mse', *args[3:]]!r}\n"
            "try:\n    runpy.run_module('mlua_swarm', run_name='__main__')\n"
            "finally:\n"
            "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
        )
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=folder,
            capture_output=True,
            text=True,
            env={**os.environ, "MSE_HOME": str(folder / "home")},
        )
        elapsed = time.monotonic() - started
        if json.loads(proc.stdout or "{}").get("status") != "done":
            raise RuntimeError(f"the run did not finish: {proc.stdout[-500:]} {proc.stderr[-2000:]}")
        peak_kib = int(proc.stderr.strip().splitlines()[-1])
    return peak_kib / 1024, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="100,1000,10000", help="comma-separated run lengths")
    parser.add_argument("--mib", type=int, default=1, help="size of each step's value in MiB")
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.steps.split(",")]
    print(f"| Steps of {args.mib} MiB | ephemeral peak RSS [MiB] | durable (SQLite) peak RSS [MiB] |")
    print("|---|---|---|")
    for steps in lengths:
        ephemeral, e_secs = measure(steps, args.mib, durable=False)
        durable, d_secs = measure(steps, args.mib, durable=True)
        print(f"| {steps:,} | {ephemeral:.0f} ({e_secs:.0f} s) | {durable:.0f} ({d_secs:.0f} s) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
