"""A child process that writes runs into a store file; the durability and concurrency tests drive it.

Usage: writer.py DB RUNS STEPS [--wait]  (with --wait it starts when a line arrives on stdin).
After each `record_step` returns it prints `run_id step_index`, so the parent knows what was flushed.
"""

from __future__ import annotations

import asyncio
import sys

from mlua_swarm.core.state import StepOutcome
from mlua_swarm.store import (
    LaunchSnapshot,
    ReplayRow,
    RunJournal,
    RunStatus,
    SqliteStore,
    StepEntry,
    create_run,
)


async def one_run(store: SqliteStore, steps: int) -> None:
    run = await create_run(store, LaunchSnapshot({"name": "w"}))
    journal = RunJournal(store, run.run_id)
    for i in range(steps):
        ref = f"s{i}"
        await journal.record_step(StepEntry(ref, f"ST-{i}", StepOutcome.PASSED, 1), ReplayRow(ref, "h", {"i": i}))
        print(run.run_id, i, flush=True)
    await journal.finish(RunStatus.DONE, {"steps": steps})


async def main(path: str, runs: int, steps: int) -> None:
    store = SqliteStore(path)
    try:
        await asyncio.gather(*(one_run(store, steps) for _ in range(runs)))
    finally:
        await store.close()


if __name__ == "__main__":
    if "--wait" in sys.argv:
        sys.stdin.readline()
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
