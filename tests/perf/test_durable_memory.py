"""A durable run keeps next to nothing per finished step (issue #14: RSS of a 100,000-step run).

Measured with tracemalloc between two points of one run, so the figure is the Python memory the
run holds on to, not the process's resident size.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import Run
from mlua_swarm.store import ReplayRow, RunJournal, SqliteStore
from mlua_swarm.store.journal import Occurrences
from mlua_swarm.worker.adapter import WorkerInvocation

from ..store.conftest import entry, new_run

START, FIRST, LAST = 100, 1_200, 3_200
"""Tracing starts at START; FIRST and LAST are past the 1,024 finished steps the engine keeps
readable (`EngineConfig.retain_finished_steps`), so both samples hold as many of those."""


async def test_a_durable_run_holds_little_memory_per_finished_step(tmp_path: Path) -> None:
    traced: dict[int, int] = {}

    async def count(inv: WorkerInvocation) -> Any:
        n = inv.input
        if n == START:
            tracemalloc.start()
        if n in (FIRST, LAST):
            gc.collect()
            traced[n] = tracemalloc.get_traced_memory()[0]
        return n + 1

    step = {"kind": "step", "ref": "count", "in": {"op": "path", "at": "$.n"}, "out": {"op": "path", "at": "$.n"}}
    raw = {
        "id": "long",
        "flow": {
            "kind": "loop",
            "counter": {"op": "path", "at": "$.i"},
            "max": LAST + 1,
            "cond": {"op": "lit", "value": True},
            "body": step,
        },
        "agents": [{"name": "count", "kind": "rust_fn", "spec": {"fn_id": "count"}}],
    }
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns={"count": count})
    store = SqliteStore(tmp_path / "mse.sqlite3")
    try:
        async with Run(compiled, store=store) as run:
            result = await run.execute({"n": 0})
    finally:
        tracemalloc.stop()
        await store.close()
    assert result.status == "done", result.error
    per_step = (traced[LAST] - traced[FIRST]) / (LAST - FIRST)
    # One occurrence counter per distinct step input remains (a 16-32 byte table slot); the
    # replay keys, their texts and the occurrence queues were ~500 bytes a step.
    assert per_step < 60, f"{per_step:.0f} bytes held per finished step"


async def test_the_journal_forgets_what_it_replayed_and_recorded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mse.sqlite3")
    run = await new_run(store)
    first = RunJournal(store, run.run_id)
    for n in range(3):
        assert first.lookup("a", f"h{n}") is None
        await first.record_step(entry("a"), ReplayRow("a", f"h{n}", n))
    assert first._unrecorded == {}
    assert store._replay_keys == {}, "commit_step leaves the keys to the journal"

    again = RunJournal(store, run.run_id, replay=await store.list_replay(run.run_id))
    hits = [again.lookup("a", f"h{n}") for n in range(3)]
    assert [h.value for h in hits if h is not None] == [0, 1, 2]
    assert again._log == {}
    assert again.lookup("a", "h0") is None, "a second occurrence of h0 was never recorded"
    await again.record_step(entry("a"), ReplayRow("a", "h0", "again"))
    assert [(r.input_hash, r.occurrence) for r in await store.list_replay(run.run_id)][-1] == ("h0", 1)
    await store.close()


def test_occurrences_count_each_fingerprint_through_growth_and_collisions() -> None:
    counts = Occurrences()
    keys = [0, 1, -1, 2**63 - 1, -(2**63), *range(64, 64 * 2_000, 64)]  # 0 and 1 share a slot marker
    assert [counts.take(k) for k in keys[2:]] == [0] * (len(keys) - 2)
    assert [counts.take(k) for k in keys[2:]] == [1] * (len(keys) - 2)
    assert counts.take(64) == 2 and counts.take(64) == 3
    assert counts.take(1) == 0 and counts.take(0) == 1, "0 is counted as 1 (a documented collision)"
    assert counts.take(128 + 1) == 0
