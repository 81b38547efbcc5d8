"""The policy layers through real engine runs: gate, concurrency, rate limits, budget, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from mlua_swarm.core.ctx import Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.ids import StepId
from mlua_swarm.middleware import ConcurrencyLayer, RateLimitLayer, TokenBucket, link
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation

from ..conftest import run_one
from .helpers import RecordingRun, buffered, next_event

AGENTS = [{"name": "echo", "kind": "rust_fn"}, {"name": "shell", "kind": "subprocess"}]


def echo_router(ran: list[str]) -> InProcSpawner[Any]:
    async def echo(inv: WorkerInvocation) -> Any:
        ran.append(inv.agent)
        return {"agent": inv.agent}

    return InProcSpawner().register("echo", echo).register("shell", echo)


async def test_deny_by_kind_blocks_the_step_with_a_clear_reason(engine: Engine, op: CapToken) -> None:
    ran: list[str] = []
    linked, _ = link(
        echo_router(ran), {"agents": AGENTS, "policy": {"deny": ["kind:subprocess"]}}, engine, run=RecordingRun()
    )
    async with engine.events() as stream:
        step = await engine.start_task(op, TaskSpec("shell", "ls"))
        with pytest.raises(DispatchFailed) as caught:
            await engine.run_step(op, step, linked)
        denied = buffered(stream, "mw.")
    assert str(caught.value) == (
        "spawn rejected by middleware: agent 'shell' is denied by policy.deny rule 'kind:subprocess'"
    )
    assert engine.read_task_state(op, step).status == "failed"
    assert [(e.kind, e.step_id, e.data["agent"]) for e in denied] == [("mw.denied", step, "shell")]
    assert (await run_one(engine, op, linked, TaskSpec("echo"))).value == {"agent": "echo"}
    assert ran == ["echo"]


async def test_allow_list_admits_only_listed_names_and_kinds(engine: Engine, op: CapToken) -> None:
    ran: list[str] = []
    policy = {"allow": ["kind:rust_fn"], "deny": ["echo"]}
    linked, _ = link(echo_router(ran), {"agents": AGENTS, "policy": policy}, engine, run=RecordingRun())
    with pytest.raises(DispatchFailed, match=r"agent 'shell \(kind:subprocess\)' matches no policy\.allow rule"):
        await run_one(engine, op, linked, TaskSpec("shell"))
    with pytest.raises(DispatchFailed, match=r"denied by policy\.deny rule 'echo'"):
        await run_one(engine, op, linked, TaskSpec("echo"))
    assert ran == []


async def test_concurrency_limit_of_two_never_lets_three_workers_overlap(engine: Engine, op: CapToken) -> None:
    running = 0
    peak = 0
    changed = asyncio.Condition()
    releases: asyncio.Queue[None] = asyncio.Queue()

    async def lane(inv: WorkerInvocation) -> Any:
        nonlocal running, peak
        async with changed:
            running += 1
            peak = max(peak, running)
            changed.notify_all()
        await releases.get()
        async with changed:
            running -= 1
            changed.notify_all()
        return inv.input

    router = InProcSpawner().register("lane", lane)
    linked, _ = link(router, {"policy": {"concurrency": {"lane": 2}}}, engine, run=RecordingRun())
    steps = [await engine.start_task(op, TaskSpec("lane", i)) for i in range(20)]
    fanout = asyncio.gather(*(engine.run_step(op, step, linked) for step in steps))
    for released in range(20):
        async with changed:
            await changed.wait_for(lambda released=released: running >= min(2, 20 - released))
        releases.put_nowait(None)
    outcomes = await fanout
    assert [o.value for o in outcomes] == list(range(20))
    assert peak == 2


async def test_cancel_while_waiting_for_a_slot_releases_it(engine: Engine, op: CapToken) -> None:
    gate = asyncio.Event()

    async def slow(inv: WorkerInvocation) -> Any:
        await gate.wait()
        return "ok"

    linked, _ = link(
        InProcSpawner().register("slow", slow),
        {"policy": {"concurrency": {"slow": 5, "*": 1}}},
        engine,
        run=RecordingRun(),
    )
    layer = linked.layer("concurrency")
    assert isinstance(layer, ConcurrencyLayer)
    async with engine.events() as stream:
        holder = asyncio.create_task(run_one(engine, op, linked, TaskSpec("slow")))
        waiter_step = await engine.start_task(op, TaskSpec("slow"))
        waiter = asyncio.create_task(engine.run_step(op, waiter_step, linked))
        wait_event = await next_event(stream, "mw.concurrency_wait")
        assert (wait_event.step_id, wait_event.data["scope"]) == (waiter_step, "*")
        assert (layer.in_use("slow"), layer.in_use("*")) == (2, 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert engine.read_task_state(op, waiter_step).status == "cancelled"
        assert (layer.in_use("slow"), layer.in_use("*")) == (1, 1)
        gate.set()
        assert (await holder).value == "ok"
        assert (layer.in_use("slow"), layer.in_use("*")) == (0, 0)
        buffered(stream)
        async with asyncio.timeout(5):
            assert (await run_one(engine, op, linked, TaskSpec("slow"))).value == "ok"
        assert [e.kind for e in buffered(stream, "mw.")] == []


async def test_timed_out_and_cancelled_workers_give_their_slots_back(engine: Engine, op: CapToken) -> None:
    started = asyncio.Event()

    async def hang(inv: WorkerInvocation) -> Any:
        started.set()
        await asyncio.Event().wait()

    router = InProcSpawner().register("hang", hang).register("quick", lambda inv: "ok")
    linked, _ = link(router, {"policy": {"concurrency": {"*": 1}}}, engine, run=RecordingRun())
    layer = linked.layer("concurrency")
    assert isinstance(layer, ConcurrencyLayer)
    assert (await run_one(engine, op, linked, TaskSpec("hang", timeout_secs=0.05))).kind == "timeout"
    assert layer.in_use("*") == 0
    started.clear()
    step = await engine.start_task(op, TaskSpec("hang"))
    running = asyncio.create_task(engine.run_step(op, step, linked))
    await started.wait()
    assert layer.in_use("*") == 1
    await engine.cancel_task(op, step)
    assert (await running).kind == "cancelled"
    assert layer.in_use("*") == 0
    async with asyncio.timeout(5):
        assert (await run_one(engine, op, linked, TaskSpec("quick"))).value == "ok"


async def test_a_failed_inner_spawn_gives_its_slot_back(engine: Engine, op: CapToken) -> None:
    linked, _ = link(InProcSpawner(), {"policy": {"concurrency": {"ghost": 1}}}, engine, run=RecordingRun())
    for _ in range(3):
        with pytest.raises(DispatchFailed, match="worker not registered: ghost"):
            async with asyncio.timeout(5):
                await run_one(engine, op, linked, TaskSpec("ghost"))
    layer = linked.layer("concurrency")
    assert isinstance(layer, ConcurrencyLayer) and layer.in_use("ghost") == 0


async def test_rate_limit_spaces_starts_and_waits_instead_of_failing(engine: Engine, op: CapToken) -> None:
    rate = 20.0
    starts: list[float] = []
    router = InProcSpawner().register("tick", lambda inv: inv.input)

    class Stopwatch(SpawnerAdapter):
        """Notes when each spawn reaches the router (the worker's own start adds scheduling jitter)."""

        async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
            starts.append(time.monotonic())
            return await router.spawn(engine, ctx, task_id, attempt, token)

    policy = {"rate_limits": {"tick": {"rate_per_sec": rate, "burst": 1}}}
    linked, _ = link(Stopwatch(), {"policy": policy}, engine, run=RecordingRun())
    async with engine.events() as stream:
        outcomes = await asyncio.gather(*(run_one(engine, op, linked, TaskSpec("tick", i)) for i in range(6)))
        limited = buffered(stream, "mw.rate_limited")
    assert sorted(o.value for o in outcomes) == list(range(6))
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 1 / rate - 0.002, gaps
    assert len(limited) == 5


async def test_cancel_while_waiting_on_a_bucket_gives_back_the_token_already_taken(
    engine: Engine, op: CapToken
) -> None:
    async def work(inv: WorkerInvocation) -> Any:
        return inv.agent

    slow = {"rate_per_sec": 0.001, "burst": 1}
    policy = {"rate_limits": {"a": slow, "*": slow}}
    router = InProcSpawner().register("a", work).register("b", work)
    linked, _ = link(router, {"policy": policy}, engine, run=RecordingRun())
    layer = linked.layer("rate_limit")
    assert isinstance(layer, RateLimitLayer)
    assert (await run_one(engine, op, linked, TaskSpec("b"))).value == "b"
    async with engine.events() as stream:
        waiter = asyncio.create_task(run_one(engine, op, linked, TaskSpec("a")))
        event = await next_event(stream, "mw.rate_limited")
    assert event.data["scope"] == "*" and event.data["wait_ms"] > 900_000
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert layer._per_agent["a"].available >= 1


async def test_token_bucket_cancelled_taker_takes_nothing() -> None:
    bucket = TokenBucket(rate=0.001, burst=1)
    await bucket.take()
    waiting = asyncio.Event()
    taker = asyncio.create_task(bucket.take(lambda _secs: waiting.set()))
    await waiting.wait()
    taker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taker
    assert 0 <= bucket.available < 0.01
    bucket.give_back()
    assert bucket.available >= 1
    await asyncio.wait_for(bucket.take(), timeout=1)


async def test_budget_stops_a_runaway_loop_of_attempts(engine: Engine, op: CapToken) -> None:
    ran: list[str] = []
    run = RecordingRun("R-runaway")
    linked, _ = link(echo_router(ran), {"policy": {"budget": {"max_attempts": 5}}}, engine, run=run)
    failures: list[str] = []
    async with engine.events() as stream:
        while not run.reasons:
            try:
                await run_one(engine, op, linked, TaskSpec("echo"))
            except DispatchFailed as exc:
                failures.append(str(exc))
        exceeded = buffered(stream, "mw.budget_exceeded")
    assert ran == ["echo"] * 5
    assert run.reasons == ["run budget exceeded: more than max_attempts=5 attempts"]
    assert failures == ["spawn rejected by middleware: run budget exceeded: more than max_attempts=5 attempts"]
    assert [(e.data["run_id"], e.data["attempts"]) for e in exceeded] == [("R-runaway", 6)]
    with pytest.raises(DispatchFailed, match="run budget exceeded"):
        await run_one(engine, op, linked, TaskSpec("echo"))
    assert len(ran) == 5 and len(run.reasons) == 1
    await linked.aclose()


async def test_budget_wall_time_cancels_the_run(engine: Engine, op: CapToken) -> None:
    never = asyncio.Event()

    async def hang(inv: WorkerInvocation) -> Any:
        await never.wait()

    step = await engine.start_task(op, TaskSpec("hang"))
    run = RecordingRun()
    linked, _ = link(
        InProcSpawner().register("hang", hang), {"policy": {"budget": {"max_wall_secs": 0.05}}}, engine, run=run
    )
    task = asyncio.create_task(engine.run_step(op, step, linked))
    run.on_cancel = task.cancel
    async with linked:
        await asyncio.wait([task])
    assert task.cancelled()
    assert run.reasons == ["run budget exceeded: max_wall_secs=0.05 elapsed"]
    assert engine.read_task_state(op, step).status == "cancelled"
