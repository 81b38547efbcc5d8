"""An `async` agent's first part (run inside `spawn`) and the rest run in one task, so a timeout or a
task group it opens before its first await belongs to the task that carries it on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import run_blueprint

AGENTS = """
import asyncio

async def own_timeout(inv):
    try:
        async with asyncio.timeout(0.02):
            await asyncio.Event().wait()
    except TimeoutError:
        return "timed out inside the agent"
    return "never"

async def group(inv):
    async def double(n):
        await asyncio.sleep(0)
        return n * 2
    async with asyncio.TaskGroup() as tg:
        first = tg.create_task(double(inv.input))
        second = tg.create_task(double(inv.input + 1))
    return [first.result(), second.result()]

async def same_task(inv):
    before = asyncio.current_task()
    await asyncio.sleep(0)
    return before is asyncio.current_task()
"""


def blueprint(agent: str, value: object = 1) -> dict[str, object]:
    return {
        "id": f"scopes-{agent}",
        "flow": {"kind": "step", "ref": agent, "in": {"op": "lit", "value": value}, "out": {"op": "path", "at": "$.r"}},
        "agents": [{"name": agent, "kind": "python", "spec": {"callable": f"scope_agents:{agent}"}}],
    }


async def run(agent: str, tmp_path: Path, value: object = 1) -> object:
    (tmp_path / "scope_agents.py").write_text(AGENTS)
    result = await run_blueprint(compile_blueprint(blueprint(agent, value), base_dir=tmp_path, fns={}))
    assert result.status == "done", result.error
    return result.final_ctx["r"]


async def test_a_timeout_the_agent_opens_before_its_first_await_is_its_own(tmp_path: Path) -> None:
    assert await run("own_timeout", tmp_path) == "timed out inside the agent"


async def test_a_task_group_in_an_agent_runs_and_joins(tmp_path: Path) -> None:
    assert await run("group", tmp_path, 5) == [10, 12]


async def test_the_agent_runs_in_one_task_across_its_first_await(tmp_path: Path) -> None:
    assert await run("same_task", tmp_path) is True
    assert asyncio.current_task() is not None
