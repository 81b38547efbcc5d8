"""Fanout lanes as tasks: a finished lane's task is freed while its siblings still run, and lanes go
through the event loop's task factory when it has one."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from mlua_swarm import WorkerInvocation
from mlua_swarm.run import run_blueprint

from ..conftest import P, compile_fns


def _fanout(items: list[Any]) -> dict[str, Any]:
    return {
        "kind": "fanout",
        "items": {"op": "lit", "value": items},
        "bind": P("$.item"),
        "body": {"kind": "step", "ref": "lane", "in": P("$.item"), "out": P("$.got")},
        "join": "all",
        "out": P("$.lanes"),
        "collect": P("$.got"),
    }


async def test_a_finished_lanes_task_is_freed_while_a_sibling_still_runs() -> None:
    tasks: dict[str, weakref.ref[asyncio.Task[Any]]] = {}
    last_waits = asyncio.Event()
    release = asyncio.Event()

    async def lane(inv: WorkerInvocation) -> Any:
        task = asyncio.current_task()
        assert task is not None
        tasks[inv.input] = weakref.ref(task)
        if inv.input == "slow":
            last_waits.set()
            await release.wait()
        return inv.input.upper()

    compiled = compile_fns(_fanout(["a", "b", "slow"]), {"lane": lane})
    run = asyncio.create_task(run_blueprint(compiled))
    await last_waits.wait()
    assert tasks["a"]() is None and tasks["b"]() is None
    assert tasks["slow"]() is not None
    release.set()
    result = await run
    assert result.status == "done" and result.final_ctx["lanes"] == ["A", "B", "SLOW"]


async def test_lanes_are_made_by_the_loops_task_factory() -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def lane(inv: WorkerInvocation) -> Any:
        return inv.input * 10

    compiled = compile_fns(_fanout([1, 2, 3]), {"lane": lane})
    loop.set_task_factory(factory)
    try:
        result = await run_blueprint(compiled)
    finally:
        loop.set_task_factory(None)
    assert result.status == "done" and result.final_ctx["lanes"] == [10, 20, 30]
    assert made.count("_Runner._lane") == 3
