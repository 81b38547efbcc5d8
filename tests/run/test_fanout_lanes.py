"""Fanout lanes: concurrent whatever task runs them; each lane in a context of its own; a lane that
ends without waiting gets no task, one that waits keeps one task, so a timeout in it ends that lane
only; the loop's task factory is used; a cancelled or failed fanout cancels every lane it started and
leaves no task behind; a durable fanout's rounds each share one commit."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.run import RunResult, run_blueprint
from mlua_swarm.store import Durability, LaunchSnapshot, RunJournal, SqliteStore, create_run

from ..conftest import P, compile_fns, fn_blueprint

seen_by_lane: contextvars.ContextVar[str] = contextvars.ContextVar("seen_by_lane", default="unset")


def _fanout(items: list[Any], join: str = "all") -> dict[str, Any]:
    return {
        "kind": "fanout",
        "items": {"op": "lit", "value": items},
        "bind": P("$.item"),
        "body": {"kind": "step", "ref": "lane", "in": P("$.item"), "out": P("$.got")},
        "join": join,
        "out": P("$.lanes"),
        "collect": P("$.got"),
    }


async def test_a_lane_that_waits_does_not_hold_up_the_lanes_after_it() -> None:
    released = asyncio.Event()

    async def lane(inv: WorkerInvocation) -> Any:
        if inv.input == "wait":
            await released.wait()
        elif inv.input == "release":
            released.set()
        return inv.input.upper()

    compiled = compile_fns(_fanout(["wait", "a", "wait", "release", "b"]), {"lane": lane})
    async with asyncio.timeout(60):  # a guard: lanes run one after another would wait forever
        result = await run_blueprint(compiled)
    assert result.status == "done"
    assert result.final_ctx["lanes"] == ["WAIT", "A", "WAIT", "RELEASE", "B"]


async def test_each_lane_runs_in_a_context_of_its_own() -> None:
    async def lane(inv: WorkerInvocation) -> Any:
        before = seen_by_lane.get()
        seen_by_lane.set(inv.input)
        if inv.input.startswith("wait"):
            await asyncio.sleep(0)  # the other lanes run meanwhile
        return [before, seen_by_lane.get()]

    compiled = compile_fns(_fanout(["a", "wait-1", "b", "wait-2", "c"]), {"lane": lane})
    seen_by_lane.set("caller")
    result = await run_blueprint(compiled)
    assert result.status == "done"
    assert result.final_ctx["lanes"] == [["caller", name] for name in ("a", "wait-1", "b", "wait-2", "c")]
    assert seen_by_lane.get() == "caller"


async def test_a_step_timeout_in_a_waiting_lane_ends_that_lane_only() -> None:
    never = asyncio.Event()

    async def lane(inv: WorkerInvocation) -> Any:
        if inv.input == "stuck":
            await never.wait()
        return inv.input.upper()

    blueprint = fn_blueprint(_fanout(["a", "stuck", "b"], "all_settled"), {"lane": lane})
    blueprint["agents"][0]["timeout_secs"] = 0.2
    compiled = compile_blueprint(blueprint, base_dir=Path.cwd(), fns={"lane": lane})
    result = await run_blueprint(compiled)
    assert result.status == "done"
    first, stuck, last = result.final_ctx["lanes"]
    assert first == {"status": "fulfilled", "value": "A"} and last == {"status": "fulfilled", "value": "B"}
    assert stuck["status"] == "rejected" and "timed out" in stuck["reason"]


async def run_naming_tasks(compiled: CompiledBlueprint) -> tuple[RunResult, list[str]]:
    """Run `compiled` under a task factory that notes the name of every task's coroutine."""
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        return await run_blueprint(compiled), made
    finally:
        loop.set_task_factory(None)


async def test_lanes_run_in_tasks_from_the_loops_task_factory() -> None:
    async def lane(inv: WorkerInvocation) -> Any:
        await asyncio.sleep(0)
        return inv.input * 10

    result, made = await run_naming_tasks(compile_fns(_fanout([1, 2, 3]), {"lane": lane}))
    assert result.status == "done" and result.final_ctx["lanes"] == [10, 20, 30]
    # the first lane waits in the task that started it; the two others got tasks of their own
    assert made == ["_Runner._lanes", "_Runner._lane", "_Runner._lane"]


async def test_lanes_that_end_without_waiting_get_no_task_of_their_own() -> None:
    async def lane(inv: WorkerInvocation) -> Any:
        return inv.input * 10

    result, made = await run_naming_tasks(compile_fns(_fanout([1, 2, 3, 4]), {"lane": lane}))
    assert result.status == "done" and result.final_ctx["lanes"] == [10, 20, 30, 40]
    assert made.count("_Runner._lanes") == 1 and made.count("_Runner._lane") == 0


async def test_a_waiting_lane_keeps_one_task_and_a_timeout_opened_before_its_first_await_ends_it_alone() -> None:
    never = asyncio.Event()

    async def lane(inv: WorkerInvocation) -> Any:
        task = asyncio.current_task()
        if inv.input == "stuck":
            try:
                async with asyncio.timeout(0.05):
                    await never.wait()
            except TimeoutError:
                return ["timed out", asyncio.current_task() is task]
        await asyncio.sleep(0)
        return [inv.input, asyncio.current_task() is task, id(task)]

    # "stuck" first: that lane waits in the task that started the lanes; the third waits in a task of its own
    compiled = compile_fns(_fanout(["stuck", "a", "stuck", "b"]), {"lane": lane})
    result = await run_blueprint(compiled)
    assert result.status == "done"
    first, a, third, b = result.final_ctx["lanes"]
    assert first == ["timed out", True] and third == ["timed out", True]
    assert a[:2] == ["a", True] and b[:2] == ["b", True]
    assert a[2] != b[2]  # waiting at the same time, in two tasks


class Parking:
    """Lanes that park until cancelled: which parked, which were cancelled; `full` once `count` parked."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.full = asyncio.Event()
        self.parked: list[int] = []
        self.cancelled: list[int] = []

    async def park(self, item: int) -> Any:
        self.parked.append(item)
        if len(self.parked) == self.count:
            self.full.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise


def _leftover_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_cancelling_the_run_cancels_every_waiting_lane_and_leaves_no_task() -> None:
    parking = Parking(3)

    async def lane(inv: WorkerInvocation) -> Any:
        if inv.input % 2 == 0:
            return inv.input
        return await parking.park(inv.input)

    # lane 0 ends at once, lane 1 waits in the task that started the lanes, 3 and 5 in tasks of their own
    compiled = compile_fns(_fanout([0, 1, 2, 3, 4, 5]), {"lane": lane})
    run = asyncio.create_task(run_blueprint(compiled))
    async with asyncio.timeout(60):
        await parking.full.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(parking.cancelled) == [1, 3, 5]
    assert not _leftover_tasks()


async def test_a_failing_lane_cancels_the_waiting_lanes_and_leaves_no_task() -> None:
    parking = Parking(2)

    async def lane(inv: WorkerInvocation) -> Any:
        if inv.input == 9:
            await parking.full.wait()
            raise ValueError("lane 9 broke")
        return await parking.park(inv.input)

    compiled = compile_fns(_fanout([0, 1, 9]), {"lane": lane})
    async with asyncio.timeout(60):
        result = await run_blueprint(compiled)
    assert result.status == "failed" and "lane 9 broke" in str(result.error)
    assert sorted(parking.cancelled) == [0, 1]
    assert not _leftover_tasks()


async def test_a_durable_fanouts_rounds_each_share_one_commit(tmp_path: Path) -> None:
    async def inc(inv: WorkerInvocation) -> Any:
        return inv.input + 1

    def step(at: str) -> dict[str, Any]:
        return {"kind": "step", "ref": "inc", "in": P(at), "out": P(at)}

    lanes = 20
    fan = {
        "kind": "fanout",
        "items": {"op": "lit", "value": list(range(0, 100 * lanes, 100))},
        "bind": P("$.item"),
        "body": {"kind": "seq", "children": [step("$.item"), step("$.item")]},
        "join": "all",
        "out": P("$.rs"),
        "collect": P("$.item"),
    }
    raw = fn_blueprint({"kind": "seq", "children": [step("$.x"), fan, step("$.x")]}, {"inc": inc})
    compiled = compile_blueprint(raw, base_dir=Path.cwd(), fns={"inc": inc})
    store = SqliteStore(tmp_path / "mse.sqlite3")
    try:
        run = await create_run(store, LaunchSnapshot(raw, {"x": 0}))
        await store.flush(Durability.SYNC)
        before = store.commits
        result = await run_blueprint(compiled, {"x": 0}, run_id=run.run_id, journal=RunJournal(store, run.run_id))
        commits = store.commits - before
        steps = await store.list_steps(run.run_id)
    finally:
        await store.close()
    assert result.status == "done"
    assert result.final_ctx["rs"] == [100 * lane + 2 for lane in range(lanes)]
    # the step before, every lane's first step, every lane's second step, the step after
    assert commits == 4
    assert len(steps) == 2 * lanes + 2 and all(s.status == "passed" for s in steps)
