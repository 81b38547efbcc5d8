"""Shared machinery of the crash-and-resume workload: a step log, a self-kill, and the tally.

Each side's step appends its input to a log file and kills its own process with SIGKILL when the
input reaches `kill_at`. Inputs below `kill_at` belong to steps that had finished before the crash;
any of them logged again by the resumed process is a finished step re-executed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import REPO_ROOT, Metrics, Unavailable
from .timing import stopwatch


def log_step(log: Path, value: int, kill_at: int | None) -> None:
    """Record that the step with input `value` ran; die abruptly if it is the step to crash in."""
    with open(log, "a") as fh:
        fh.write(f"{value}\n")
    if value == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def logged(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def run_phase(target: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run one phase probe (`module:function`) in a fresh interpreter; the completed process and its seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]))
    argv = [sys.executable, "-m", "bench.probe", target, json.dumps(kwargs)]
    elapsed = stopwatch()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
    return proc, elapsed()


def _unavailable(proc: subprocess.CompletedProcess[str]) -> str | None:
    """The reason a phase probe reported itself unavailable, if it did."""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None
    reason = json.loads(lines[-1]).get("unavailable")
    return None if reason is None else str(reason)


def crash_then_resume(target: str, workdir: Path, n: int, kill_after: int) -> Metrics:
    """Phase `run` (killed inside step `kill_after`), then phase `resume`; count re-executed finished steps.

    `target` is a phase probe taking `workdir, n, kill_at, phase`: in phase `run` its process must
    die by SIGKILL; in phase `resume` it finishes the same run and exits normally. The resume time
    is that process's wall time (a restart: interpreter, imports, recovery, the remaining steps),
    unless the phase reports a `resume_ms` of its own (when it launches the real command itself).
    """
    log = workdir / "steps.log"
    first, _ = run_phase(target, workdir=str(workdir), n=n, kill_at=kill_after, phase="run")
    if first.returncode != -signal.SIGKILL:
        reason = _unavailable(first)
        if reason is not None:
            raise Unavailable(reason)
        raise RuntimeError(f"the first run was not killed: exit {first.returncode}: {first.stderr[-300:]}")
    finished = {i for i in logged(log) if i < kill_after}
    log.write_text("")
    resumed, seconds = run_phase(target, workdir=str(workdir), n=n, kill_at=None, phase="resume")
    if resumed.returncode != 0:
        raise RuntimeError(f"resume failed: exit {resumed.returncode}: {resumed.stderr[-300:]}")
    reason = _unavailable(resumed)
    if reason is not None:
        raise Unavailable(reason)
    executed = logged(log)
    reported = json.loads(resumed.stdout.strip().splitlines()[-1])["metrics"].get("resume_ms")
    return {
        "reexecuted": float(len(finished.intersection(executed))),
        "resume_ms": seconds * 1000 if reported is None else float(reported),
        "executed_on_resume": float(len(executed)),
        "finished_before_kill": float(len(finished)),
    }
