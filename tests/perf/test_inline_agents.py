"""Where a plain `def` agent runs: `spec.inline` true (on the event loop), false (in a worker thread),
or unset / "auto" (adaptive: threads first, the loop once it proved quick, threads again after a slow
call there until eight times as many calls in a row were quick)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.run import Run
from mlua_swarm.services import RuntimeServices
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker.adapter import PROMOTE_AFTER, SLOW_INLINE_SECS, InProcSpawner, WorkerInvocation

from ..conftest import run_one

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3 * PROMOTE_AFTER
"""Enough calls for a quick function to be moved onto the loop even if a few of them, on a busy
machine, took longer than the limit in their thread."""

ran_on: list[threading.Thread] = []


def where(inv: Any) -> int:
    """A plain function that records the thread it ran on."""
    ran_on.append(threading.current_thread())
    value: int = inv.input
    return value + 1


slowed: list[bool] = []


def slow_once_on_the_loop(inv: Any) -> int:
    """`where`, but its first call on the event loop's thread (the main thread here) runs slow."""
    if threading.current_thread() is threading.main_thread() and not slowed:
        slowed.append(True)
        time.sleep(3 * SLOW_INLINE_SECS)  # the slow work itself, not a wait for anything
    return where(inv)


async def _plus_one(value: int) -> int:
    await asyncio.sleep(0)
    return value + 1


def with_its_own_loop(inv: Any) -> int:
    """A sync wrapper over async code: `asyncio.run` in a plain function."""
    ran_on.append(threading.current_thread())
    return asyncio.run(_plus_one(inv.input))


flow_loop: list[asyncio.AbstractEventLoop] = []


def asks_the_flow_loop(inv: Any) -> int:
    """A sync function over async code that runs on the flow's own event loop: on that loop's thread
    it would wait for itself (bounded here, so that such a call fails instead of hanging the test)."""
    ran_on.append(threading.current_thread())
    return asyncio.run_coroutine_threadsafe(_plus_one(inv.input), flow_loop[-1]).result(timeout=5)


def blueprint(kind: str, inline: object, fn: str = "where") -> dict[str, Any]:
    spec: dict[str, Any] = {"callable": f"tests.perf.test_inline_agents:{fn}"} if kind == "python" else {"fn_id": fn}
    if inline is not None:
        spec["inline"] = inline
    step = {"kind": "step", "ref": "a", "in": {"op": "path", "at": "$.i"}, "out": {"op": "path", "at": "$.i"}}
    return {
        "id": "inline",
        "flow": {"kind": "seq", "children": [step] * STEPS},
        "agents": [{"name": "a", "kind": kind, "spec": spec}],
    }


FNS = {
    "where": where,
    "slow_once_on_the_loop": slow_once_on_the_loop,
    "with_its_own_loop": with_its_own_loop,
    "asks_the_flow_loop": asks_the_flow_loop,
}


def compiled(kind: str, inline: object, fn: str = "where", **options: Any) -> CompiledBlueprint:
    return compile_blueprint(blueprint(kind, inline, fn), base_dir=ROOT, fns=FNS, **options)


async def run_it(blueprint: CompiledBlueprint) -> list[bool]:
    """Run the Blueprint once; for each call, whether it ran on the event loop's thread."""
    ran_on.clear()
    async with Run(blueprint) as run:
        result = await run.execute({"i": 0})
    assert result.status == "done", result.error
    assert result.final_ctx["i"] == STEPS and len(ran_on) == STEPS
    loop_thread = threading.current_thread()
    return [thread is loop_thread for thread in ran_on]


def moved_onto_the_loop(on_loop: list[bool]) -> bool:
    """Calls ran in threads, at least `PROMOTE_AFTER` of them, then on the loop to the end."""
    return on_loop == sorted(on_loop) and not any(on_loop[:PROMOTE_AFTER]) and on_loop[-1]


@pytest.mark.parametrize("kind", ["python", "rust_fn"])
@pytest.mark.parametrize("inline", [True, False, None, "auto"])
async def test_where_a_plain_function_runs(kind: str, inline: object) -> None:
    agent = compiled(kind, inline)
    first, again = await run_it(agent), await run_it(agent)
    if inline is True:
        assert all(first) and all(again)
    elif inline is False:
        assert not any(first) and not any(again)
    else:
        # what it learned lives as long as the compiled Blueprint: the next run starts on the loop
        assert moved_onto_the_loop(first) and all(again), first


async def test_a_slow_call_on_the_loop_sends_the_function_back_to_threads_for_eight_times_longer() -> None:
    slowed.clear()
    agent = compiled("python", None, "slow_once_on_the_loop")
    on_loop: list[bool] = []
    for _ in range(6):
        on_loop += await run_it(agent)
    assert slowed, "the function was never called on the loop"
    slow = on_loop.index(True)
    after = on_loop[slow + 1 :]
    assert slow >= PROMOTE_AFTER and not any(after[: 8 * PROMOTE_AFTER]) and moved_onto_the_loop(after), on_loop


@pytest.mark.parametrize("inline", [True, None])
async def test_a_function_that_runs_its_own_event_loop_keeps_working(inline: bool | None) -> None:
    """On the loop's thread too: the function sees no running loop there, as in a worker thread."""
    agent = compiled("python", inline, "with_its_own_loop")
    on_loop = await run_it(agent) + await run_it(agent)
    if inline:
        assert all(on_loop)


async def test_a_function_waiting_for_the_flow_loop_is_never_moved_onto_it() -> None:
    """Its calls need the loop to wake up and answer, which takes longer than a call may to count as
    quick: left unset, it stays in worker threads however often it runs."""
    flow_loop.append(asyncio.get_running_loop())
    agent = compiled("python", None, "asks_the_flow_loop")
    on_loop: list[bool] = []
    for _ in range(4):
        on_loop += await run_it(agent)
    assert not any(on_loop), on_loop


async def test_a_blocking_plain_function_never_holds_up_the_loop(engine: Engine, op: CapToken) -> None:
    """Before and after another function moved onto the loop, a blocking one runs in a thread: the loop
    runs other steps meanwhile, and its step's timeout fires on time."""
    entered, release = threading.Semaphore(0), threading.Event()
    blocked_on: list[threading.Thread] = []

    def blocks(inv: WorkerInvocation) -> str:
        blocked_on.append(threading.current_thread())
        entered.release()
        release.wait(30)
        return "released"

    spawner = InProcSpawner().register("blocks", blocks).register("where", where)
    loop_thread = threading.current_thread()
    for quick_on_loop in (False, True):
        release.clear()
        ran_on.clear()
        blocked = asyncio.ensure_future(run_one(engine, op, spawner, TaskSpec("blocks")))
        assert await asyncio.to_thread(entered.acquire, timeout=30)
        for i in range(STEPS):
            assert (await run_one(engine, op, spawner, TaskSpec("where", i))).value == i + 1
        assert not blocked.done() and blocked_on[-1] is not loop_thread
        on_loop = [thread is loop_thread for thread in ran_on]
        # the first round moved `where` onto the loop; the second finds it there
        assert all(on_loop) if quick_on_loop else moved_onto_the_loop(on_loop), on_loop
        release.set()
        assert (await blocked).value == "released"
    release.clear()
    began = time.monotonic()
    outcome = await run_one(engine, op, spawner, TaskSpec("blocks", timeout_secs=0.1))
    assert outcome.kind == "timeout" and time.monotonic() - began < 5 and blocked_on[-1] is not loop_thread
    release.set()


async def test_a_host_may_keep_unset_ones_in_threads() -> None:
    services = RuntimeServices(adaptive_inline=False)
    assert not any(await run_it(compiled("python", None, services=services)))
    assert moved_onto_the_loop(await run_it(compiled("python", "auto", services=services)))


@pytest.mark.parametrize("bad", ["yes", 1, "AUTO", ["auto"]])
def test_inline_must_be_true_false_or_auto(bad: object) -> None:
    with pytest.raises(DiagnosticError) as info:
        compiled("rust_fn", bad)
    [diag] = info.value.diagnostics
    assert diag.code == "invalid-agent-spec" and 'spec.inline must be true, false or "auto"' in diag.message
    assert diag.hint and "worker thread" in diag.hint
