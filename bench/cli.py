"""Whole `mse` processes as users run them: start-up, `runs list` beside one huge stored result, and
`mse run` per step with the progress view on (plain lines, and the terminal live view on a pty).

The probe functions (`startup_ms`, `run_per_step`, `langgraph_per_step`) are what `python -m bench`
runs; `python -m bench.cli [--repeat N] [--src DIR]...` prints the same cases, one line per case and
checkout. Each `--src` is a checkout's `src` folder; with two, the checkouts take turns run by run, so a
change is measured before and after under the same machine load.

Per step, start-up cancelled: each repetition runs the small and the large size back to back and
takes (large - small) / (large steps - small steps).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import blueprints
from .harness import REPO_ROOT, Metrics, needs
from .machine import load


@dataclass(frozen=True)
class Finished:
    """One finished child process: wall seconds, peak RSS and what it printed on stdout."""

    seconds: float
    rss_mb: float
    stdout: str


def mse_env(home: str, src: Path = REPO_ROOT / "src", **extra: str) -> dict[str, str]:
    """The environment of an `mse` child: checkout `src` and this repository (for `bench.agents`) on
    the path, its own MSE_HOME."""
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO_ROOT}", "MSE_HOME": home, **extra}


def as_installed(env: dict[str, str]) -> dict[str, str]:
    """`env` without PYTHONDONTWRITEBYTECODE, for the start-up rows: an installed package starts from
    compiled bytecode (pip compiles it at install, a checkout caches it on first import), so with the
    variable set every process would compile each module it imports from source (after the warm-up run
    wrote the caches, both sides read them)."""
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def mse(*words: str) -> list[str]:
    return [sys.executable, "-m", "mlua_swarm", *words]


def once(argv: Sequence[str], env: dict[str, str], tty: bool = False, cwd: Path = REPO_ROOT) -> Finished:
    """Run `argv` to its end: stdout and stderr to files (not a terminal), or stderr on a pseudo-terminal
    when `tty` (what a user at a terminal sees). Raises when the process fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        master, slave = os.openpty() if tty else (-1, err.fileno())
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
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
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
        if code != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-800:]
            raise RuntimeError(f"{' '.join(argv)} exited {code}: {tail}")
    return Finished(seconds, usage.ru_maxrss / 1024, stdout)


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


def filled_home(home: str, result_mb: int, runs: int = 30, src: Path = REPO_ROOT / "src") -> None:
    """`fill_store` in a child, so the filler's memory never counts in a measured process."""
    fill = f"import asyncio; from bench.cli import fill_store; asyncio.run(fill_store({home!r}, {result_mb}, {runs}))"
    subprocess.run([sys.executable, "-c", fill], env=mse_env(home, src), cwd=REPO_ROOT, check=True)


def startup_ms(words: list[str], reps: int, result_mb: int = 0, stored_runs: int = 0) -> Metrics:
    """Wall time and peak RSS of `mse WORDS` in fresh processes; with `result_mb` (or `stored_runs`) the
    store first holds that many small runs and one result of that size."""
    with tempfile.TemporaryDirectory() as home:
        if result_mb or stored_runs:
            filled_home(home, result_mb, stored_runs or 30)
        env = as_installed(mse_env(home))
        once(mse(*words), env)
        done = [once(mse(*words), env) for _ in range(reps)]
    return {"ms": [d.seconds * 1000 for d in done], "rss_mb": [d.rss_mb for d in done]}


def python_startup_ms(reps: int) -> Metrics:
    """`python -c pass`: the interpreter's own start-up, the floor of any command."""
    done = [once([sys.executable, "-c", "pass"], as_installed(dict(os.environ))) for _ in range(reps + 1)][1:]
    return {"ms": [d.seconds * 1000 for d in done]}


def _per_step(time_small: float, time_large: float, small: int, large: int) -> float:
    return (time_large - time_small) / (large - small) * 1e6


def run_per_step(small: int, large: int, reps: int, tty: bool = False, fn: str = "inc") -> Metrics:
    """`mse run --ephemeral` of the sequence Blueprint (`bench.blueprints.sequence`, a `python` step
    adding 1) at two sizes, progress on: plain lines to a file, or the live view on a pty (`tty`)."""
    with tempfile.TemporaryDirectory() as home:
        paths = {}
        for n in (small, large):
            paths[n] = Path(home) / f"seq-{n}.json"
            paths[n].write_text(json.dumps(blueprints.sequence(n, fn)))
        env = as_installed(mse_env(home))
        once(mse("run", str(paths[small]), "--ephemeral"), env, tty)
        per_step, startup = [], []
        for _ in range(reps):
            t_small = once(mse("run", str(paths[small]), "--ephemeral"), env, tty).seconds
            t_large = once(mse("run", str(paths[large]), "--ephemeral"), env, tty).seconds
            step = _per_step(t_small, t_large, small, large)
            per_step.append(step)
            startup.append((t_small - small * step / 1e6) * 1000)
    return {"us_per_step": per_step, "startup_ms": startup}


def langgraph_per_step(small: int, large: int, reps: int) -> Metrics:
    """LangGraph's loop graph of trivial nodes, `invoke`d in a whole `python` process (`python -m
    bench.peers_langgraph N`), at the same two sizes."""
    needs("langgraph.graph", ours=False)
    env = as_installed({**os.environ, "PYTHONPATH": str(REPO_ROOT)})

    def run(n: int) -> float:
        return once([sys.executable, "-m", "bench.peers_langgraph", str(n)], env).seconds

    run(small)
    per_step, startup = [], []
    for _ in range(reps):
        t_small, t_large = run(small), run(large)
        step = _per_step(t_small, t_large, small, large)
        per_step.append(step)
        startup.append((t_small - small * step / 1e6) * 1000)
    return {"us_per_step": per_step, "startup_ms": startup}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--src", type=Path, action="append", help="a checkout's src folder (repeat to compare; default this one)"
    )
    parser.add_argument("--result-mb", type=int, default=100, help="size of the one huge stored result")
    parser.add_argument("--steps", default="1000,10000", help="the two step counts of the mse run rows")
    args = parser.parse_args(argv)
    sources: list[Path] = args.src or [REPO_ROOT / "src"]
    print(f"at start: {load()}")

    def taking_turns(words: list[str], home: str, repeat: int, tty: bool = False) -> dict[Path, list[Finished]]:
        runs: dict[Path, list[Finished]] = {src: [] for src in sources}
        for _ in range(repeat):
            for src in sources:
                runs[src].append(once(mse(*words), as_installed(mse_env(home, src)), tty))
        return runs

    def report(case: str, runs: dict[Path, list[Finished]]) -> None:
        for src, done in runs.items():
            ms = [d.seconds * 1000 for d in done]
            rss = max(d.rss_mb for d in done)
            print(f"{case} [{src}]: {statistics.median(ms):.0f} ms (min {min(ms):.0f}), {rss:.0f} MB")

    python = python_startup_ms(args.repeat)["ms"]
    assert isinstance(python, list)
    print(f"python -c pass: {statistics.median(python):.0f} ms (min {min(python):.0f})")
    with tempfile.TemporaryDirectory() as home:
        for words in (["--help"], ["bp", "--help"], ["runs", "list", "--limit", "20"]):
            report(f"mse {' '.join(words)}", taking_turns(words, home, args.repeat))
        filled_home(home, args.result_mb, src=sources[-1])
        listing = taking_turns(["runs", "list", "--limit", "20"], home, args.repeat)
        report(f"mse runs list --limit 20 beside a {args.result_mb} MB result", listing)
        small, large = (int(s) for s in args.steps.split(","))
        paths = {}
        for n in (small, large):
            paths[n] = Path(home) / f"seq-{n}.json"
            paths[n].write_text(json.dumps(blueprints.sequence(n)))
        for tty in (False, True):
            view = "terminal live view" if tty else "plain progress"
            repeat = max(3, args.repeat // 2)
            timed = {n: taking_turns(["run", str(paths[n]), "--ephemeral"], home, repeat, tty) for n in paths}
            for src in sources:
                steps = [
                    _per_step(s.seconds, big.seconds, small, large)
                    for s, big in zip(timed[small][src], timed[large][src], strict=True)
                ]
                print(
                    f"mse run --ephemeral, {view} [{src}]: {statistics.median(steps):.0f} us/step "
                    f"(min {min(steps):.0f}), start-up cancelled"
                )
    print(f"at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
