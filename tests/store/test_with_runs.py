"""The journal under the real run layer: resume re-runs only what did not finish; commits follow the flow's shape."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import run_blueprint
from mlua_swarm.store import (
    Durability,
    LaunchSnapshot,
    RunJournal,
    RunStatus,
    SqliteStore,
    create_run,
    prepare_resume,
)
from mlua_swarm.store import sqlite as sqlite_backend


def P(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


async def test_resume_replays_finished_steps_and_runs_the_rest(tmp_path: Path) -> None:
    calls: list[str] = []
    broken = {"polish": True}

    async def outline(inv: WorkerInvocation) -> Any:
        calls.append("outline")
        return f"outline of {inv.input}"

    async def draft(inv: WorkerInvocation) -> Any:
        calls.append("draft")
        return f"draft from {inv.input}"

    async def polish(inv: WorkerInvocation) -> Any:
        calls.append("polish")
        if broken["polish"]:
            raise RuntimeError("polisher crashed")
        return inv.input.upper()

    fns = {"outline": outline, "draft": draft, "polish": polish}
    steps = [("outline", "$.topic", "$.outline"), ("draft", "$.outline", "$.draft"), ("polish", "$.draft", "$.final")]
    raw = {
        "id": "pipeline",
        "flow": {"kind": "seq", "children": [{"kind": "step", "ref": r, "in": P(i), "out": P(o)} for r, i, o in steps]},
        "agents": [{"name": name, "kind": "rust_fn", "spec": {"fn_id": name}} for name in fns],
    }
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns=fns)
    store = SqliteStore(tmp_path / "mse.sqlite3")
    run = await create_run(store, LaunchSnapshot(raw, {"topic": "owls"}))

    journal = RunJournal(store, run.run_id)
    first = await run_blueprint(compiled, {"topic": "owls"}, run_id=run.run_id, journal=journal)
    assert first.status == "failed"
    await journal.finish(RunStatus.INTERRUPTED, first.to_json())
    assert [s.status for s in await store.list_steps(run.run_id)] == ["passed", "passed", "failed"]

    broken["polish"] = False
    calls.clear()
    plan = await prepare_resume(store, run.run_id)
    resumed_journal = RunJournal(store, run.run_id, replay=plan.replay)
    second = await run_blueprint(compiled, plan.launch.init, run_id=run.run_id, journal=resumed_journal)
    assert await resumed_journal.finish(RunStatus.DONE, second.to_json()) is RunStatus.DONE

    assert second.status == "done"
    assert second.final_ctx["final"] == "DRAFT FROM OUTLINE OF OWLS"
    assert calls == ["polish"]
    assert (second.steps_replayed, second.steps_dispatched) == (2, 1)
    assert [r.step_ref for r in await store.list_replay(run.run_id)] == ["outline", "draft", "polish"]
    await store.close()


def _step(ref: str, at: str = "$.x") -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": P(at), "out": P(at)}


async def _run_counting_commits(tmp_path: Path, flow: dict[str, Any], fns: dict[str, Any]) -> tuple[int, list[str]]:
    """Run `flow` durably in `batch`; returns the commits it took and the statuses of its stored steps."""
    raw = {"id": "shape", "flow": flow, "agents": [{"name": n, "kind": "rust_fn", "spec": {"fn_id": n}} for n in fns]}
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns=fns)
    store = SqliteStore(tmp_path / "mse.sqlite3")
    run = await create_run(store, LaunchSnapshot(raw, {"x": 0}))
    await store.flush(Durability.SYNC)
    before = store.commits
    journal = RunJournal(store, run.run_id)
    result = await run_blueprint(compiled, {"x": 0}, run_id=run.run_id, journal=journal)
    assert result.status == "done", result.to_json()
    commits = store.commits - before
    statuses = [s.status for s in await store.list_steps(run.run_id)]
    await store.close()
    return commits, statuses


async def test_a_sequential_flow_commits_each_step_before_the_next_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "TRACE_DELAY_SECS", 3600.0)
    readers: list[sqlite3.Connection] = []
    seen: list[int] = []

    async def inc(inv: WorkerInvocation) -> Any:
        # Connected once the store exists: a connection made before would leave an empty file behind.
        if not readers:
            readers.append(sqlite3.connect(tmp_path / "mse.sqlite3"))
        seen.append(readers[0].execute("SELECT COUNT(*) FROM history").fetchone()[0])
        return inv.input + 1

    flow = {"kind": "loop", "counter": P("$.i"), "max": 5, "cond": {"op": "lit", "value": True}, "body": _step("inc")}
    commits, statuses = await _run_counting_commits(tmp_path, flow, {"inc": inc})
    readers[0].close()
    assert seen == [0, 1, 2, 3, 4]
    assert commits == 5
    assert statuses == ["passed"] * 5


async def test_a_fanouts_lanes_share_one_commit_per_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "TRACE_DELAY_SECS", 3600.0)

    async def inc(inv: WorkerInvocation) -> Any:
        return inv.input + 1

    lane = {"kind": "seq", "children": [_step("inc", "$.item"), _step("inc", "$.item")]}
    fan = {"kind": "fanout", "items": {"op": "lit", "value": [1, 2, 3]}, "bind": P("$.item"), "body": lane}
    flow = {"kind": "seq", "children": [_step("inc"), {**fan, "join": "all", "out": P("$.rs")}, _step("inc")]}
    commits, statuses = await _run_counting_commits(tmp_path, flow, {"inc": inc})
    # The step before, the lanes' first steps, the lanes' second steps, the step after.
    assert commits == 4
    assert statuses == ["passed"] * 8
