"""A loop gives the event loop a turn every few milliseconds, so a run whose steps never wait (quick
`async` agents are settled inside their spawn) still times out, can be cancelled, and lets other
tasks run. On failure these runs would go on to their end (seconds), which the asserts catch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import Run, RunResult

ROUNDS = 200_000
"""Far more rounds than run before the timeout or the cancel (a round costs tens of microseconds)."""

SEQUENCE = 10_000
"""Steps in one `seq`: well over the timeout of the test that runs them."""


def _path(at: str) -> dict[str, Any]:
    return {"op": "path", "at": at}


def _loop(body: dict[str, Any], agents: list[dict[str, Any]], rounds: int = ROUNDS) -> dict[str, Any]:
    return {
        "id": "fair-turns",
        "flow": {
            "kind": "loop",
            "counter": _path("$.round"),
            "cond": {"op": "lit", "value": True},
            "body": body,
            "max": rounds,
        },
        "agents": agents,
    }


STEP_LOOP = _loop(
    {"kind": "step", "ref": "inc", "in": _path("$.i"), "out": _path("$.i")},
    [{"name": "inc", "kind": "python", "spec": {"callable": "bench.agents:inc"}}],
)
ASSIGN_LOOP = _loop({"kind": "assign", "at": _path("$.i"), "value": {"op": "lit", "value": 1}}, [], 50 * ROUNDS)
"""An assign round costs about a microsecond: fifty times the rounds of a step loop."""


async def timed_out(blueprint: dict[str, Any], init: dict[str, Any], timeout: float) -> RunResult:
    """Run `blueprint` with a run timeout of `timeout` seconds and check that the timeout ended it."""
    compiled = compile_blueprint(blueprint, base_dir=Path.cwd(), fns={})
    async with Run(compiled, store=None, timeout=timeout) as run:
        result = await run.execute(init)
    assert result.status == "failed"
    assert result.error is not None and result.error["message"] == f"run exceeded its timeout of {timeout}s"
    return result


async def test_a_loop_of_steps_that_never_wait_still_times_out() -> None:
    result = await timed_out(STEP_LOOP, {"i": 0}, 0.2)
    assert result.steps_dispatched < ROUNDS


async def test_a_loop_without_steps_still_times_out() -> None:
    await timed_out(ASSIGN_LOOP, {}, 0.2)


async def test_a_long_sequence_of_steps_that_never_wait_still_times_out() -> None:
    steps = [{"kind": "step", "ref": "inc", "in": _path("$.i"), "out": _path("$.i")}] * SEQUENCE
    result = await timed_out({**STEP_LOOP, "flow": {"kind": "seq", "children": steps}}, {"i": 0}, 0.05)
    assert result.steps_dispatched < SEQUENCE


async def test_a_fanout_of_many_quick_lanes_still_times_out() -> None:
    fanout = {
        "kind": "fanout",
        "items": {"op": "lit", "value": list(range(SEQUENCE * 2))},
        "bind": _path("$.i"),
        "body": {"kind": "step", "ref": "inc", "in": _path("$.i"), "out": _path("$.i")},
        "join": "all",
        "out": _path("$.all"),
    }
    result = await timed_out({**STEP_LOOP, "flow": fanout}, {}, 0.05)
    assert result.steps_dispatched < SEQUENCE * 2


async def test_other_tasks_run_and_can_cancel_a_run_of_quick_steps() -> None:
    compiled = compile_blueprint(STEP_LOOP, base_dir=Path.cwd(), fns={})
    async with Run(compiled, store=None) as run:
        turns = 0

        async def canceller() -> None:
            nonlocal turns
            for _ in range(20):  # twenty separate turns of the loop while the run goes on
                await asyncio.sleep(0)
                turns += 1
            run.cancel("enough")

        other = asyncio.create_task(canceller())
        result = await run.execute({"i": 0})
        await other
    assert turns == 20
    assert result.status == "cancelled"
    assert result.steps_dispatched < ROUNDS
