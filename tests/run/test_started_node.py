"""A step's start names its flow node: an observer hears the same `node_index` the step's history
entry records, so two nodes of one agent are told apart while they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.ids import StepId
from mlua_swarm.run import Run, run_blueprint
from mlua_swarm.store import open_store

from ..conftest import P, compile_fns


class Starts:
    """A `RunObserver` that keeps each start's (ref, node_index)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        self.started.append((step_ref, node_index))

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        return None


async def _same(inv: WorkerInvocation) -> Any:
    return inv.input


SKIPPED_BRANCH_THEN_X: dict[str, Any] = {
    "kind": "seq",
    "children": [
        {
            "kind": "branch",
            "cond": {"op": "lit", "value": False},
            "then": {"kind": "step", "ref": "x", "in": P("$.a"), "out": P("$.b")},
            "else": {"kind": "assign", "at": P("$.skipped"), "value": {"op": "lit", "value": True}},
        },
        {"kind": "step", "ref": "x", "in": P("$.a"), "out": P("$.c")},
        {"kind": "step", "ref": "x", "in": P("$.c"), "out": P("$.d")},
    ],
}
"""Pre-order: seq 0, branch 1, its x 2, the assign 3, then x 4 and x 5. The branch's x never runs."""


async def test_each_start_names_its_own_node_not_the_agents_first() -> None:
    starts = Starts()
    result = await run_blueprint(compile_fns(SKIPPED_BRANCH_THEN_X, {"x": _same}), {"a": 1}, observer=starts)
    assert result.status == "done" and result.final_ctx["d"] == 1
    assert starts.started == [("x", 4), ("x", 5)]


async def test_a_start_names_the_node_its_history_entry_records(tmp_path: Path) -> None:
    store = await open_store(str(tmp_path / "runs.sqlite3"))
    try:
        starts = Starts()
        async with Run(compile_fns(SKIPPED_BRANCH_THEN_X, {"x": _same}), store=store, observer=starts) as run:
            result = await run.execute({"a": 1})
        assert result.status == "done"
        entries = await store.list_steps(result.run_id)
        assert [(e.step_ref, e.node_index) for e in entries] == starts.started == [("x", 4), ("x", 5)]
    finally:
        await store.close()
