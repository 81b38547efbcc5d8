"""Whole-process timings of `mse` commands: start-up, `runs list` beside one huge stored result, and
`mse run` per step with the progress view on.

`python -m bench.cli [--repeat N] [--src DIR]` prints one line per case (median and minimum of N
fresh processes, peak RSS of the slowest) and the load average before and after. `--src` times the
package in another checkout (its `src` folder), so a change can be measured before and after on one
machine in one sitting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import REPO_ROOT
from .machine import load

STEP_BLUEPRINT = {
    "id": "count",
    "flow": {
        "kind": "loop",
        "counter": {"op": "path", "at": "$.n"},
        "max": 0,
        "cond": {"op": "lit", "value": True},
        "body": {"kind": "step", "ref": "inc", "in": {"op": "path", "at": "$.n"}, "out": {"op": "path", "at": "$.v"}},
    },
    "agents": [{"name": "inc", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}


def timed(argv: list[str], env: dict[str, str], repeat: int, tty: bool = False) -> tuple[float, float, float]:
    """Median and minimum wall seconds of `repeat` runs of `argv`, and the peak RSS (MB) seen."""
    walls: list[float] = []
    peak = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        if tty:
            master, slave = os.openpty()
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
            os.close(slave)
            while True:
                try:
                    if not os.read(master, 65536):
                        break
                except OSError:
                    break
            proc.wait()
            os.close(master)
        else:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(argv)} failed: {err.decode()[-500:]}")
        walls.append(time.perf_counter() - started)
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return statistics.median(walls), min(walls), peak


async def fill_store(path: Path, result_mb: int, runs: int) -> None:
    """A store with `runs` small finished runs and, newest, one whose result is `result_mb` MB of JSON."""
    from mlua_swarm.ids import RunId, TaskId
    from mlua_swarm.store import RunRecord, RunStatus, TaskRecord, open_store

    store = await open_store(str(path))
    try:
        for i in range(runs + 1):
            task = TaskRecord(TaskId.new(), f"task {i}")
            await store.create_task(task)
            run = RunRecord(RunId.new(), task.task_id, RunStatus.DONE, created_at=time.time())
            await store.create_run(run)
            big = i == runs
            store.set_result(run.run_id, {"items": ["x" * 1000] * (result_mb * 1000)} if big else {"ok": i})
        await store.flush()
    finally:
        await store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--src", type=Path, default=REPO_ROOT / "src", help="the src folder of the checkout to time")
    parser.add_argument("--result-mb", type=int, default=100, help="size of the one huge stored result")
    parser.add_argument("--steps", default="1000,10000", help="step counts of the mse run rows")
    args = parser.parse_args(argv)
    print(f"at start: {load()}; timing {args.src}")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(args.src), "MSE_HOME": home}
        mse = [sys.executable, "-m", "mlua_swarm"]
        python = timed([sys.executable, "-c", "pass"], env, args.repeat)
        print(f"python -c pass: {python[0] * 1000:.0f} ms (min {python[1] * 1000:.0f})")
        for words in (["--help"], ["runs", "list", "--limit", "20"], ["bp", "--help"]):
            median, low, peak = timed([*mse, *words], env, args.repeat)
            print(f"mse {' '.join(words)} (empty store): {median * 1000:.0f} ms (min {low * 1000:.0f}), {peak:.0f} MB")
        store = Path(home) / "mse.sqlite3"
        asyncio.run(fill_store(store, args.result_mb, 30))
        median, low, peak = timed([*mse, "runs", "list", "--limit", "20"], env, args.repeat)
        print(
            f"mse runs list --limit 20 beside a {args.result_mb} MB result: "
            f"{median * 1000:.0f} ms (min {low * 1000:.0f}), {peak:.0f} MB"
        )
        bp = Path(home) / "count.json"
        small, large = (int(s) for s in args.steps.split(","))
        for tty in (False, True):
            view = "terminal live view" if tty else "plain progress (not a terminal)"
            walls = []
            for steps in (small, large):
                bp.write_text(json.dumps({**STEP_BLUEPRINT, "flow": {**STEP_BLUEPRINT["flow"], "max": steps}}))
                median, low, _ = timed([*mse, "run", str(bp), "--ephemeral"], env, max(3, args.repeat // 2), tty)
                walls.append(median)
                print(f"mse run --ephemeral, {steps} steps, {view}: {median:.2f} s (min {low:.2f})")
            per_step = (walls[1] - walls[0]) / (large - small) * 1e6
            print(f"  -> {per_step:.0f} us/step, start-up cancelled ({view})")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
