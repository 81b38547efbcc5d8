"""`run_blueprint` in process: large fanouts, cancellation, replay through a journal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.state import StepOutcome
from mlua_swarm.run import Run, run_blueprint
from mlua_swarm.run.dispatcher import input_hash
from mlua_swarm.store import ReplayHit, ReplayRow, StepEntry

from ..conftest import P, compile_fns


async def double(inv: WorkerInvocation) -> Any:
    return inv.input * 2


async def test_a_fanout_of_ten_thousand_lanes_completes() -> None:
    flow = {
        "kind": "fanout",
        "items": P("$.items"),
        "bind": P("$.item"),
        "join": "all",
        "out": P("$.lanes"),
        "body": {"kind": "step", "ref": "double", "in": P("$.item"), "out": P("$.y")},
    }
    result = await run_blueprint(compile_fns(flow, {"double": double}), {"items": list(range(10_000))})
    assert result.status == "done"
    lanes = result.final_ctx["lanes"]
    assert len(lanes) == 10_000 and [lane["y"] for lane in lanes[:3]] == [0, 2, 4] and lanes[-1]["y"] == 19_998
    assert result.steps_dispatched == 10_000


async def test_cancel_stops_every_running_lane_and_reports_cancelled() -> None:
    started = 0
    all_started = asyncio.Event()
    ended: list[str] = []

    async def park(inv: WorkerInvocation) -> None:
        nonlocal started
        started += 1
        if started == 5:
            all_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("ended")

    flow = {
        "kind": "fanout",
        "items": P("$.items"),
        "bind": P("$.item"),
        "join": "all",
        "out": P("$.lanes"),
        "body": {"kind": "step", "ref": "park", "in": P("$.item"), "out": P("$.y")},
    }
    run = Run(compile_fns(flow, {"park": park}))
    async with run:
        running = asyncio.create_task(run.execute({"items": [1, 2, 3, 4, 5]}))
        await all_started.wait()
        run.cancel("budget exceeded")
        result = await running
    assert result.status == "cancelled" and "budget exceeded" in result.error["message"]
    assert ended == ["ended"] * 5


class ListJournal:
    """A journal kept in a list: replays what an earlier run of the same flow recorded."""

    def __init__(self, earlier: list[tuple[StepEntry, ReplayRow | None]]) -> None:
        self.earlier: dict[tuple[str, str], list[ReplayRow]] = {}
        for _, replay in earlier:
            if replay is not None:
                self.earlier.setdefault((replay.step_ref, replay.input_hash), []).append(replay)
        self.records: list[tuple[StepEntry, ReplayRow | None]] = []
        self.traces: list[tuple[str, str | None]] = []

    def lookup(self, step_ref: str, input_hash: str) -> ReplayHit | None:
        queue = self.earlier.get((step_ref, input_hash))
        if not queue:
            return None
        replay = queue.pop(0)
        return ReplayHit(replay.value, replay.skip, 0)

    async def record_step(self, entry: StepEntry, replay: ReplayRow | None) -> None:
        self.records.append((entry, replay))

    def trace(self, kind: str, step_ref: str | None = None, attempt: int | None = None, payload: Any = None) -> None:
        self.traces.append((kind, step_ref))


async def test_a_journal_replays_finished_steps_without_dispatching_them() -> None:
    calls: list[Any] = []

    async def counted(inv: WorkerInvocation) -> Any:
        calls.append(inv.input)
        return inv.input + 1

    flow = {
        "kind": "loop",
        "counter": P("$.i"),
        "max": 4,
        "cond": {"op": "lit", "value": True},
        "body": {"kind": "step", "ref": "inc", "in": P("$.n"), "out": P("$.n")},
    }
    first = ListJournal([])
    done = await run_blueprint(compile_fns(flow, {"inc": counted}), {"n": 0}, journal=first)
    assert done.final_ctx == {"n": 4, "i": 4} and calls == [0, 1, 2, 3]
    calls.clear()
    again = ListJournal(first.records[:3])
    replayed = await run_blueprint(compile_fns(flow, {"inc": counted}), {"n": 0}, journal=again)
    assert replayed.final_ctx == done.final_ctx
    assert calls == [3] and replayed.steps_replayed == 3 and replayed.steps_dispatched == 1


class FieldJournal(ListJournal):
    """A journal with `record` too: the dispatcher hands it a step's fields and builds no records."""

    def __init__(self) -> None:
        super().__init__([])
        self.fields: list[tuple[Any, ...]] = []

    async def record(self, *fields: Any) -> None:
        self.fields.append(fields)


async def test_the_dispatcher_gives_a_journal_with_record_the_steps_fields() -> None:
    async def inc(inv: WorkerInvocation) -> Any:
        return inv.input + 1

    async def gate(inv: WorkerInvocation) -> Any:
        raise RuntimeError("gate broke")

    flow = {
        "kind": "seq",
        "children": [
            {"kind": "step", "ref": "inc", "in": P("$.n"), "out": P("$.n")},
            {"kind": "step", "ref": "gate", "in": P("$.n"), "out": P("$.g")},
        ],
    }
    journal = FieldJournal()
    result = await run_blueprint(compile_fns(flow, {"inc": inc, "gate": gate}), {"n": 1}, journal=journal)
    assert result.status == "failed" and journal.records == []
    (passed, failed) = journal.fields
    ref, step_id, status, attempt, started, finished, stats, stderr, error, node, digest, value = passed
    assert (ref, status, attempt, stderr, error, value) == ("inc", StepOutcome.PASSED, 1, None, None, 2)
    assert str(step_id).startswith("ST-") and started <= finished and digest == input_hash(1)
    assert node is not None and stats is not None
    assert failed[0] == "gate" and failed[2] is StepOutcome.FAILED and failed[10] is None
    assert "gate broke" in failed[8]


async def test_middleware_decisions_reach_the_journal_trace() -> None:
    async def ok(inv: WorkerInvocation) -> Any:
        return 1

    flow = {"kind": "step", "ref": "shell", "in": {"op": "lit", "value": 1}, "out": P("$.x")}
    raw = {
        "id": "t",
        "flow": flow,
        "policy": {"deny": ["shell"]},
        "agents": [{"name": "shell", "kind": "rust_fn", "spec": {"fn_id": "shell"}}],
    }
    journal = ListJournal([])
    result = await run_blueprint(compile_blueprint(raw, base_dir=Path.cwd(), fns={"shell": ok}), {}, journal=journal)
    assert result.status == "failed"
    assert ("mw.denied", "shell") in journal.traces


async def test_an_engine_running_many_runs_keeps_no_state_per_finished_run() -> None:
    from mlua_swarm import Engine

    engine = Engine()
    flow = {"kind": "step", "ref": "double", "in": {"op": "lit", "value": 2}, "out": P("$.y")}
    blueprint = compile_fns(flow, {"double": double})
    await run_blueprint(blueprint, {}, engine=engine)
    tokens, steps = engine.token_count(), engine.live_step_count()
    for _ in range(50):
        assert (await run_blueprint(blueprint, {}, engine=engine)).final_ctx == {"y": 4}
    assert engine.token_count() == tokens and len(engine._sessions) == 0
    assert engine.live_step_count() <= steps + 50


async def test_fifty_durable_runs_at_once_on_one_sqlite_file(tmp_path: Path) -> None:
    from mlua_swarm.store import LaunchSnapshot, durable_run, open_store

    flow = {
        "kind": "loop",
        "counter": P("$.i"),
        "max": 20,
        "cond": {"op": "lit", "value": True},
        "body": {"kind": "step", "ref": "double", "in": P("$.i"), "out": P("$.y")},
    }
    blueprint = compile_fns(flow, {"double": double})
    store = await open_store(str(tmp_path / "shared.sqlite3"))

    async def one() -> Any:
        async with durable_run(store, LaunchSnapshot(blueprint.raw, {})) as journal:
            result = await run_blueprint(blueprint, {}, journal=journal)
            await journal.finish(result.status, result.final_ctx)
            return journal.run_id, result

    try:
        outcomes = await asyncio.gather(*(one() for _ in range(50)))
        for run_id, result in outcomes:
            assert result.status == "done" and result.final_ctx == {"i": 20, "y": 38}
            assert [entry.status for entry in await store.list_steps(run_id)] == ["passed"] * 20
            assert (await store.get_run(run_id)).status == "done"
    finally:
        await store.close()
