"""Whole-process timings of `mse` commands: start-up, `runs list` beside one huge stored result, and
`mse run` per step with the progress view on.

`python -m bench.cli [--repeat N] [--src DIR]...` prints one line per case and checkout (median and
minimum of N fresh processes) and the load average before and after. Each `--src` is a checkout's
`src` folder; with two, the checkouts take turns run by run, so a change is measured before and
after under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
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


def once(argv: list[str], env: dict[str, str], tty: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv` (stderr on a pseudo-terminal when `tty`)."""
    started = time.perf_counter()
    master, slave = os.openpty() if tty else (-1, subprocess.DEVNULL)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    if tty:
        os.close(slave)
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
        os.close(master)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def interleaved(
    words: list[str], envs: dict[str, dict[str, str]], repeat: int, tty: bool = False
) -> dict[str, tuple[float, float, float]]:
    """Median and minimum seconds and the largest peak RSS (MB) of `mse WORDS` per checkout, the
    checkouts taking turns."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in envs}
    for _ in range(repeat):
        for name, env in envs.items():
            runs[name].append(once([sys.executable, "-m", "mlua_swarm", *words], env, tty))
    return {
        name: (statistics.median(w for w, _ in r), min(w for w, _ in r), max(m for _, m in r))
        for name, r in runs.items()
    }


async def fill_store(home: str, result_mb: int, runs: int) -> None:
    """The store of MSE_HOME `home`: `runs` small finished runs and, newest, one whose result is
    `result_mb` MB of JSON."""
    from mlua_swarm.ids import RunId, TaskId
    from mlua_swarm.store import RunRecord, RunStatus, TaskRecord, open_store

    store = await open_store(str(Path(home) / "mse.sqlite3"))
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
    parser.add_argument(
        "--src", type=Path, action="append", help="a checkout's src folder (repeat to compare; default this one)"
    )
    parser.add_argument("--result-mb", type=int, default=100, help="size of the one huge stored result")
    parser.add_argument("--steps", default="1000,10000", help="the two step counts of the mse run rows")
    args = parser.parse_args(argv)
    sources = args.src or [REPO_ROOT / "src"]
    print(f"at start: {load()}")
    with tempfile.TemporaryDirectory() as home:
        envs = {str(src): {**os.environ, "PYTHONPATH": str(src), "MSE_HOME": home} for src in sources}

        def report(
            case: str, figures: dict[str, tuple[float, float, float]], scale: float = 1000, unit: str = "ms"
        ) -> None:
            for name, (median, low, rss) in figures.items():
                digits = 0 if scale == 1000 else 2
                print(
                    f"{case} [{name}]: {median * scale:.{digits}f} {unit} (min {low * scale:.{digits}f}), {rss:.0f} MB"
                )

        python = [once([sys.executable, "-c", "pass"], os.environ.copy())[0] for _ in range(args.repeat)]
        print(f"python -c pass: {statistics.median(python) * 1000:.0f} ms (min {min(python) * 1000:.0f})")
        for words in (["--help"], ["bp", "--help"], ["runs", "list", "--limit", "20"]):
            report(f"mse {' '.join(words)}", interleaved(words, envs, args.repeat))
        # In a child: a parent grown by the fill would count in every later child's peak RSS.
        fill = (
            f"import asyncio; from bench.cli import fill_store; asyncio.run(fill_store({home!r}, {args.result_mb}, 30))"
        )
        subprocess.run(
            [sys.executable, "-c", fill],
            env=envs[str(sources[-1])] | {"PYTHONPATH": f"{sources[-1]}:{REPO_ROOT}"},
            check=True,
        )
        listing = interleaved(["runs", "list", "--limit", "20"], envs, args.repeat)
        report(f"mse runs list --limit 20 beside a {args.result_mb} MB result", listing)
        bp = Path(home) / "count.json"
        small, large = (int(s) for s in args.steps.split(","))
        for tty in (False, True):
            view = "terminal live view" if tty else "plain progress"
            runs = {}
            for steps in (small, large):
                bp.write_text(json.dumps({**STEP_BLUEPRINT, "flow": {**STEP_BLUEPRINT["flow"], "max": steps}}))
                runs[steps] = interleaved(["run", str(bp), "--ephemeral"], envs, max(3, args.repeat // 2), tty)
                report(f"mse run --ephemeral, {steps} steps, {view}", runs[steps], 1, "s")
            for name in envs:
                per_step = (runs[large][name][0] - runs[small][name][0]) / (large - small) * 1e6
                best = (runs[large][name][1] - runs[small][name][1]) / (large - small) * 1e6
                print(f"  -> {view} [{name}]: {per_step:.0f} us/step (from minima {best:.0f}), start-up cancelled")
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
