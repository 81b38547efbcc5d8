"""`Run`: one object owns a run; many runs share one engine and one store; cancel, timeout, resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import Engine, WorkerInvocation
from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.core.config import EngineConfig
from mlua_swarm.diagnostics import Diagnostic, DiagnosticError
from mlua_swarm.middleware import LayerRegistry, SpawnerLayer
from mlua_swarm.run import Run, RunResult
from mlua_swarm.store import LaunchSnapshot, RunNotResumable, RunOwner, RunStatus, Store, open_store
from mlua_swarm.store.owner import current_owner

from ..conftest import PREP_THEN_WORK, P, compile_fns


def _blueprint(fns: dict[str, Any], policy: dict[str, Any] | None = None) -> CompiledBlueprint:
    """`prep` then `work` (`PREP_THEN_WORK`) over `fns`, with `policy` when given."""
    compiled: CompiledBlueprint = compile_fns(PREP_THEN_WORK, fns, **({} if policy is None else {"policy": policy}))
    return compiled


async def _prep(inv: WorkerInvocation) -> Any:
    return inv.input + 1


class Parked:
    """A `work` step that waits until cancelled, counting how many are waiting."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.waiting = 0
        self.ended = 0
        self.all_waiting = asyncio.Event()

    async def __call__(self, inv: WorkerInvocation) -> Any:
        self.waiting += 1
        if self.waiting == self.expected:
            self.all_waiting.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.ended += 1


async def _store(tmp_path: Path) -> Store:
    return await open_store(str(tmp_path / "runs.sqlite3"))


async def test_fifty_runs_at_once_on_one_engine_pass_fail_cancel_and_time_out(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    engine = Engine(EngineConfig(token_secret=await store.token_secret()))
    parked = Parked(expected=25)

    async def double(inv: WorkerInvocation) -> Any:
        return inv.input * 2

    async def broken(inv: WorkerInvocation) -> Any:
        raise RuntimeError("worker crashed")

    passing = _blueprint({"prep": _prep, "work": double})
    failing = _blueprint({"prep": _prep, "work": broken})
    parking = _blueprint({"prep": _prep, "work": parked})
    kinds = ["pass", "fail", "cancel", "timeout"] * 12 + ["pass", "cancel"]
    runs: list[Run] = []
    for kind in kinds:
        compiled = {"pass": passing, "fail": failing}.get(kind, parking)
        timeout = 0.3 if kind == "timeout" else None
        runs.append(Run(compiled, store=store, engine=engine, timeout=timeout))

    async def one(run: Run, n: int) -> RunResult:
        async with run:
            return await run.execute({"n": n})

    try:
        tasks = [asyncio.create_task(one(run, n)) for n, run in enumerate(runs)]
        await parked.all_waiting.wait()
        for kind, run in zip(kinds, runs, strict=True):
            if kind == "cancel":
                run.cancel("stopped by the test")
        results = await asyncio.gather(*tasks)
        assert parked.ended == 25
        for n, (kind, run, result) in enumerate(zip(kinds, runs, results, strict=True)):
            record = await store.get_run(run.run_id)
            assert result.run_id == run.run_id
            if kind == "pass":
                assert result.status == "done" and result.final_ctx == {"n": n + 1, "out": 2 * (n + 1)}
                assert record.status is RunStatus.DONE and record.result == result.final_ctx
            elif kind == "fail":
                assert result.status == "failed" and result.error is not None
                assert result.error["failed_step"] == "work"
                assert record.status is RunStatus.FAILED and record.result["error"]["failed_step"] == "work"
            elif kind == "cancel":
                assert result.status == "cancelled" and result.error is not None
                assert result.error["message"] == "run cancelled: stopped by the test"
                assert record.status is RunStatus.CANCELLED
                assert record.result["error"]["message"] == "run cancelled: stopped by the test"
            else:
                assert result.status == "failed" and result.error is not None
                assert result.error["message"] == "run exceeded its timeout of 0.3s"
                assert record.status is RunStatus.FAILED and record.result["error"] == result.error
            steps = [(s.step_ref, s.status) for s in await store.list_steps(run.run_id)]
            assert steps[0] == ("prep", "passed")
        assert len(engine._sessions) == 0
    finally:
        await store.close()


async def test_a_shared_engine_keeps_each_runs_trace_to_itself(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    engine = Engine(EngineConfig(token_secret=await store.token_secret()))

    async def double(inv: WorkerInvocation) -> Any:
        return inv.input * 2

    denied = _blueprint({"prep": _prep, "work": double}, policy={"deny": ["work"]})
    allowed = _blueprint({"prep": _prep, "work": double})
    runs = [Run(denied, store=store, engine=engine), Run(allowed, store=store, engine=engine)]

    async def one(run: Run) -> RunResult:
        async with run:
            return await run.execute({"n": 1})

    try:
        first, second = await asyncio.gather(*(one(run) for run in runs))
        assert (first.status, second.status) == ("failed", "done")
        kinds = [[e.kind for e in await store.list_trace(run.run_id)] for run in runs]
        assert "mw.denied" in kinds[0] and "mw.denied" not in kinds[1]
    finally:
        await store.close()


async def test_cancelling_the_caller_re_raises_and_records_the_run_cancelled(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    parked = Parked(expected=1)
    run = Run(_blueprint({"prep": _prep, "work": parked}), store=store)

    async def caller() -> RunResult:
        async with run:
            return await run.execute({"n": 0})

    try:
        task = asyncio.create_task(caller())
        await parked.all_waiting.wait()
        task.cancel("the caller went away")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert parked.ended == 1
        assert (await store.get_run(run.run_id)).status is RunStatus.CANCELLED
        # The step it stopped is in the history, ended `cancelled` like any other end.
        entries = await store.list_steps(run.run_id)
        assert [(e.step_ref, e.status.value, e.error) for e in entries] == [
            ("prep", "passed", None),
            ("work", "cancelled", "cancelled"),
        ]
    finally:
        await store.close()


async def test_the_lanes_an_any_fanout_no_longer_needs_end_cancelled_in_the_history(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    parked = Parked(expected=2)

    async def work(inv: WorkerInvocation) -> Any:
        if inv.input == "quick":
            await parked.all_waiting.wait()  # the other lanes are running when this one passes
            return "won"
        return await parked(inv)

    lane = {"kind": "step", "ref": "work", "in": P("$.item"), "out": P("$.got")}
    fanout = {
        "kind": "fanout",
        "items": {"op": "lit", "value": ["slow-a", "quick", "slow-b"]},
        "bind": P("$.item"),
        "body": lane,
        "join": "any",
        "collect": P("$.got"),
        "out": P("$.out"),
    }
    run = Run(compile_fns(fanout, {"work": work}), store=store)
    try:
        async with run:
            result = await run.execute({})
        assert result.status == "done" and result.final_ctx == {"out": "won"}
        assert parked.ended == 2
        entries = await store.list_steps(run.run_id)
        assert sorted(e.status.value for e in entries) == ["cancelled", "cancelled", "passed"]
    finally:
        await store.close()


async def test_cancel_before_execute_ends_the_run_cancelled_without_dispatching() -> None:
    calls: list[Any] = []

    async def work(inv: WorkerInvocation) -> Any:
        calls.append(inv.input)
        return 1

    run = Run(_blueprint({"prep": _prep, "work": work}))
    run.cancel("changed my mind")
    run.cancel("a second reason is ignored")
    async with run:
        result = await run.execute({"n": 0})
    assert result.status == "cancelled" and result.error == {
        "message": "run cancelled: changed my mind",
        "failed_step": None,
        "verdict_value": None,
    }
    assert calls == []


async def test_a_cancel_that_loses_the_race_with_the_end_of_the_flow_leaves_no_pending_cancellation() -> None:
    holder: list[Run] = []

    async def work(inv: WorkerInvocation) -> Any:
        holder[0].cancel("the step asked")
        return inv.input

    run = Run(_blueprint({"prep": _prep, "work": work}))
    holder.append(run)
    async with run:
        result = await run.execute({"n": 0})
        await asyncio.sleep(0)
    assert result.status == "done" and result.final_ctx == {"n": 1, "out": 1}
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_execute_needs_the_run_entered_and_runs_once() -> None:
    run = Run(_blueprint({"prep": _prep, "work": _prep}))
    with pytest.raises(RuntimeError, match="enter the run first"):
        await run.execute({"n": 0})
    async with run:
        assert (await run.execute({"n": 0})).final_ctx == {"n": 1, "out": 2}
        with pytest.raises(RuntimeError, match="already executed"):
            await run.execute({"n": 0})


async def test_link_warnings_are_compile_diagnostics_and_the_runs_warnings() -> None:
    raw: dict[str, Any] = {
        "id": "warned",
        "flow": {"kind": "step", "ref": "prep", "in": P("$.n"), "out": P("$.n")},
        "agents": [{"name": "prep", "kind": "rust_fn", "spec": {"fn_id": "prep"}}],
        "policy": {"deny": ["nobody"]},
        "spawner_hints": {"layers": ["no_such_hint"]},
    }
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns={"prep": _prep})
    codes = [(d.code, d.stage) for d in compiled.link.warnings]
    assert codes == [("unknown-spawner-hint", "link"), ("unknown-policy-agent", "link")]
    assert [(d.code, d.stage) for d in compiled.diagnostics] == codes
    async with Run(compiled) as run:
        assert run.warnings == list(compiled.link.warnings)
        assert (await run.execute({"n": 1})).final_ctx == {"n": 2}


class Resumable:
    """State of the module-level functions a continued run reaches through its stored `--fn` options."""

    calls: list[str] = []
    park = True
    parked: asyncio.Event | None = None


async def resumable_prep(inv: WorkerInvocation) -> Any:
    Resumable.calls.append("prep")
    return inv.input + 1


async def resumable_work(inv: WorkerInvocation) -> Any:
    Resumable.calls.append("work")
    if Resumable.park:
        assert Resumable.parked is not None
        Resumable.parked.set()
        await asyncio.Event().wait()
    return inv.input * 10


async def test_resume_and_rerun_from_continue_a_stored_run_through_the_run_object(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    Resumable.parked = asyncio.Event()
    calls = Resumable.calls
    compiled = _blueprint({"prep": resumable_prep, "work": resumable_work})
    options = {"fns": {"prep": f"{__name__}:resumable_prep", "work": f"{__name__}:resumable_work"}}
    run = Run(compiled, store=store, launch=LaunchSnapshot(compiled.raw, {"n": 1}, options))

    async def crashing() -> None:
        async with run:
            await run.execute({"n": 1})

    try:
        task = asyncio.create_task(crashing())
        await Resumable.parked.wait()
        me = current_owner()
        store.set_owner(run.run_id, RunOwner(me.host, me.pid, me.started_at - 3600))
        assert await store.sweep_orphans() == [run.run_id]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await store.get_run(run.run_id)).status is RunStatus.INTERRUPTED
        assert calls == ["prep", "work"]

        Resumable.park = False
        calls.clear()
        resumed = await Run.resume(store, run.run_id)
        async with resumed:
            second = await resumed.execute()
        assert resumed.run_id == run.run_id
        assert second.status == "done" and second.final_ctx == {"n": 2, "out": 20}
        assert calls == ["work"] and second.steps_replayed == 1

        calls.clear()
        again = await Run.rerun_from(store, run.run_id, "work")
        async with again:
            third = await again.execute()
        assert third.final_ctx == {"n": 2, "out": 20} and calls == ["work"]
        assert (await store.get_run(run.run_id)).status is RunStatus.DONE

        with pytest.raises(RunNotResumable):
            await Run.resume(store, run.run_id)
    finally:
        await store.close()


async def test_create_commits_the_record_before_execute_and_a_failed_start_is_recorded(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        run = await Run.create(store, _blueprint({"prep": _prep, "work": _prep}), {"n": 1}, goal="g")
        assert (await store.get_run(run.run_id)).status is RunStatus.RUNNING
        async with run:
            result = await run.execute()
        assert result.final_ctx == {"n": 2, "out": 3}
        assert (await store.get_run(run.run_id)).status is RunStatus.DONE

        refusing = LayerRegistry().add_base(_refuse)
        doomed = await Run.create(store, _blueprint({"prep": _prep, "work": _prep}), {"n": 1}, registry=refusing)
        with pytest.raises(DiagnosticError) as raised:
            async with doomed:
                pass
        assert [d.code for d in raised.value.diagnostics] == ["layer-refused"]
        record = await store.get_run(doomed.run_id)
        assert record.status is RunStatus.FAILED
        assert record.result["error"]["message"] == "the run did not start: it failed to start"
    finally:
        await store.close()


def _refuse(engine: Engine) -> SpawnerLayer:
    raise DiagnosticError([Diagnostic("layer-refused", "this layer refuses to link", hint="none")])


async def test_create_refuses_a_plan_that_cannot_run_before_recording_anything(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        strict = {**_blueprint({"prep": _prep, "work": _prep}).raw, "check_policy": "strict"}
        unplaced = compile_blueprint(strict, base_dir=Path.cwd(), fns={"prep": _prep, "work": _prep})
        with pytest.raises(DiagnosticError) as raised:
            await Run.create(store, unplaced, {"n": 1})
        assert [d.code for d in raised.value.diagnostics] == ["projection-root-missing"]
        assert await store.list_runs() == [] and await store.list_tasks() == []
    finally:
        await store.close()


async def test_interrupt_leaves_the_record_interrupted_so_it_can_be_resumed(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    parked = Parked(expected=1)
    run = Run(_blueprint({"prep": _prep, "work": parked}), store=store)
    try:
        async with run:
            task = asyncio.create_task(run.execute({"n": 0}))
            await parked.all_waiting.wait()
            run.interrupt("server shutting down")
            result = await task
        assert result.status == "cancelled" and parked.ended == 1
        assert (await store.get_run(run.run_id)).status is RunStatus.INTERRUPTED
    finally:
        await store.close()


class Feed:
    """A live feed that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def trace(self, kind: str, step_ref: str | None, attempt: int | None, payload: Any) -> None:
        self.calls.append((kind, step_ref))

    async def step_recorded(self) -> None:
        self.calls.append(("recorded", None))

    def flow_ended(self) -> None:
        self.calls.append(("ended", None))


async def test_a_live_feed_gets_the_trace_a_turn_per_recorded_step_and_the_end_before_the_result(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path)
    feed = Feed()
    run = Run(_blueprint({"prep": _prep, "work": _prep}, policy={"deny": ["work"]}), store=store, feed=feed)
    try:
        async with run:
            result = await run.execute({"n": 0})
        assert result.status == "failed"
        # prep recorded, work denied (traced, then recorded failed), then the end: nothing after it.
        assert feed.calls[0] == ("recorded", None)
        assert ("mw.denied", "work") in feed.calls
        assert feed.calls.count(("recorded", None)) == 2
        assert feed.calls[-1] == ("ended", None)
        # The feed records the trace itself: the journal wrote none of it.
        kinds = [e.kind for e in await store.list_trace(run.run_id)]
        assert [k for k in kinds if not k.startswith("core.")] == []
        assert kinds[-1] == "core.run_finished"
    finally:
        await store.close()


async def test_expire_ends_the_run_failed_with_the_callers_limit(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    parked = Parked(expected=1)
    run = Run(_blueprint({"prep": _prep, "work": parked}), store=store, timeout=3600)
    try:
        async with run:
            task = asyncio.create_task(run.execute({"n": 0}))
            await parked.all_waiting.wait()
            run.expire(2.5)
            result = await task
        assert result.status == "failed" and parked.ended == 1
        assert result.error is not None and result.error["message"] == "run exceeded its timeout of 2.5s"
        assert (await store.get_run(run.run_id)).status is RunStatus.FAILED
    finally:
        await store.close()
