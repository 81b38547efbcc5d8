"""The journal under the real run layer: a failed run resumed from the store re-runs only what did not finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run.launch import RunControl, run_blueprint
from mlua_swarm.store import (
    DispatchJournal,
    LaunchSnapshot,
    RunJournal,
    RunStatus,
    SqliteStore,
    create_run,
    prepare_resume,
)


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
    first = await run_blueprint(
        compiled, {"topic": "owls"}, control=RunControl(run.run_id), journal=DispatchJournal(journal)
    )
    assert first.status == "failed"
    await journal.finish(RunStatus.INTERRUPTED, first.to_json())
    assert [s.status for s in await store.list_steps(run.run_id)] == ["passed", "passed", "failed"]

    broken["polish"] = False
    calls.clear()
    plan = await prepare_resume(store, run.run_id)
    resumed_journal = RunJournal(store, run.run_id, replay=plan.replay)
    second = await run_blueprint(
        compiled, plan.launch.init, control=RunControl(run.run_id), journal=DispatchJournal(resumed_journal)
    )
    assert await resumed_journal.finish(RunStatus.DONE, second.to_json()) is RunStatus.DONE

    assert second.status == "done"
    assert second.final_ctx["final"] == "DRAFT FROM OUTLINE OF OWLS"
    assert calls == ["polish"]
    assert (second.steps_replayed, second.steps_dispatched) == (2, 1)
    assert [r.step_ref for r in await store.list_replay(run.run_id)] == ["outline", "draft", "polish"]
    await store.close()
