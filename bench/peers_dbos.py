"""DBOS doing the same work: a workflow of `n` trivial `@DBOS.step`s on a SQLite system database."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .crash import crash_then_resume, log_step
from .harness import Metrics, needs
from .sqlite_size import db_bytes
from .timing import per_unit_us, stopwatch

WORKFLOW_ID = "bench-crash"


def seq(n: int, reps: int) -> Metrics:
    """Time one workflow of `n` sequential steps per repetition; bytes are the database growth per step."""
    dbos_mod = needs("dbos", ours=False)
    DBOS = dbos_mod.DBOS
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dbos.sqlite")
        DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{path}"})

        def add_one(i: int) -> int:
            return i + 1

        step = DBOS.step()(add_one)

        def sequence(count: int) -> int:
            value = 0
            for _ in range(count):
                value = step(value)
            return value

        flow = DBOS.workflow()(sequence)

        DBOS.launch()
        sizes: list[float] = []
        try:

            def once() -> float:
                before = db_bytes(path)
                elapsed = stopwatch()
                result = flow(n)
                spent = elapsed()
                assert result == n
                sizes.append((db_bytes(path) - before) / n)
                return spent

            samples = per_unit_us(once, n, reps)
        finally:
            DBOS.destroy()
    return {"us_per_step": samples, "bytes_per_step": sizes[-reps:]}


def crash_phase(workdir: str, n: int, kill_at: int | None, phase: str) -> Metrics:
    """One phase of the crash workload: `run` a workflow of `n` steps, or `resume` (DBOS recovers it at launch)."""
    dbos_mod = needs("dbos", ours=False)
    DBOS = dbos_mod.DBOS
    log = Path(workdir) / "steps.log"
    DBOS(config={"name": "bench-crash", "system_database_url": f"sqlite:///{workdir}/dbos.sqlite"})

    def add_one(i: int) -> int:
        log_step(log, i, kill_at)
        return i + 1

    step = DBOS.step()(add_one)

    def sequence(count: int) -> int:
        value = 0
        for _ in range(count):
            value = step(value)
        return value

    flow = DBOS.workflow()(sequence)
    DBOS.launch()
    try:
        if phase == "run":
            with dbos_mod.SetWorkflowID(WORKFLOW_ID):
                result = flow(n)
        else:
            result = DBOS.retrieve_workflow(WORKFLOW_ID).get_result()
    finally:
        DBOS.destroy()
    if result != n:
        raise RuntimeError(f"DBOS workflow returned {result}, expected {n}")
    return {"final": float(result)}


def crash_resume(n: int, kill_after: int) -> Metrics:
    """Kill a workflow of `n` steps inside step `kill_after`, then relaunch DBOS, which recovers it."""
    needs("dbos", ours=False)
    with tempfile.TemporaryDirectory() as tmp:
        return crash_then_resume("bench.peers_dbos:crash_phase", Path(tmp), n, kill_after)
