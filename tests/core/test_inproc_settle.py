"""An in-process `async` function that never suspends is finished inside `spawn`: its Final is on
the tail and its worker is settled before the engine joins it. One that suspends, fails or is
cancelled keeps the ordinary path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation
from mlua_swarm.worker.output import Final

from ..conftest import run_one


class Watching(SpawnerAdapter):
    """Records, right after the inner spawn returns, whether the worker is settled and its tail."""

    def __init__(self, inner: SpawnerAdapter) -> None:
        self.inner = inner
        self.seen: list[tuple[bool, list[Any]]] = []
        self.spawned = asyncio.Event()

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        worker = await self.inner.spawn(engine, ctx, task_id, attempt, token)
        self.seen.append((worker.settled(), engine.output_tail(task_id, attempt)))
        self.spawned.set()
        return worker


async def test_a_function_that_never_suspends_is_settled_inside_spawn() -> None:
    engine = Engine()
    op = engine.attach("op")

    async def quick(inv: WorkerInvocation) -> Any:
        return inv.input + 1

    watching = Watching(InProcSpawner().register("quick", quick))
    outcome = await run_one(engine, op, watching, TaskSpec("quick", 41))
    assert (outcome.kind, outcome.value) == ("pass", 42)
    [(settled, tail)] = watching.seen
    assert settled
    assert [type(event) for event in tail] == [Final]


async def test_a_function_that_suspends_finishes_in_its_own_task() -> None:
    engine = Engine()
    op = engine.attach("op")
    release = asyncio.Event()

    async def waits(inv: WorkerInvocation) -> Any:
        await release.wait()
        return "after"

    watching = Watching(InProcSpawner().register("waits", waits))
    running = asyncio.create_task(run_one(engine, op, watching, TaskSpec("waits", 0)))
    await watching.spawned.wait()
    [(settled, tail)] = watching.seen
    assert not settled and tail == []
    release.set()
    outcome = await running
    assert (outcome.kind, outcome.value) == ("pass", "after")


async def raises(inv: WorkerInvocation) -> Any:
    raise ValueError("bad input")


async def returns_nan(inv: WorkerInvocation) -> Any:
    return float("nan")


@pytest.mark.parametrize(("broken", "message"), [(raises, "ValueError: bad input"), (returns_nan, "refused")])
async def test_a_function_failing_before_any_suspension_fails_the_attempt(broken: Any, message: str) -> None:
    engine = Engine()
    op = engine.attach("op")
    watching = Watching(InProcSpawner().register("broken", broken))
    with pytest.raises(DispatchFailed, match=message):
        await run_one(engine, op, watching, TaskSpec("broken", 0))
    [(settled, _tail)] = watching.seen
    assert not settled


async def test_a_function_raising_cancelled_before_suspending_ends_the_step_cancelled() -> None:
    engine = Engine()
    op = engine.attach("op")

    async def gives_up(inv: WorkerInvocation) -> Any:
        raise asyncio.CancelledError()

    outcome = await run_one(engine, op, InProcSpawner().register("gives_up", gives_up), TaskSpec("gives_up", 0))
    assert outcome.kind == "cancelled"
