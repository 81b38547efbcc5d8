"""Fanout lanes: concurrent whatever task runs them; each lane in a context of its own; a lane that
waits keeps one task, so a step timeout in it ends that lane only; the loop's task factory is used."""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import run_blueprint

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


async def test_lanes_run_in_tasks_from_the_loops_task_factory() -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def lane(inv: WorkerInvocation) -> Any:
        await asyncio.sleep(0)
        return inv.input * 10

    compiled = compile_fns(_fanout([1, 2, 3]), {"lane": lane})
    loop.set_task_factory(factory)
    try:
        result = await run_blueprint(compiled)
    finally:
        loop.set_task_factory(None)
    assert result.status == "done" and result.final_ctx["lanes"] == [10, 20, 30]
    assert made.count("_Runner._lane") == 3
