"""An `async` agent's first part (run inside `spawn`) and the rest run in one task, so a timeout or a
task group it opens before its first await belongs to the task that carries it on; like a task, every
agent runs in a copy of its caller's `contextvars`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.run import run_blueprint

AGENTS = """
import asyncio
import contextvars

tag = contextvars.ContextVar("tag", default="unset")

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

async def tag_at_once(inv):
    seen = tag.get()
    tag.set("set by tag_at_once")
    return seen

async def tag_after_await(inv):
    seen = tag.get()
    tag.set("set by tag_after_await")
    await asyncio.sleep(0)
    tag.set("set again by tag_after_await")
    return [seen, tag.get()]

def tag_inline(inv):
    seen = tag.get()
    tag.set("set by tag_inline")
    return seen

def tag_in_thread(inv):
    seen = tag.get()
    tag.set("set by tag_in_thread")
    return seen

async def read_tag(inv):
    return tag.get()
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


TAG_SETTERS = ["tag_at_once", "tag_after_await", "tag_inline", "tag_in_thread"]


def tag_blueprint() -> dict[str, object]:
    """Each setter, then a reader: what the reader sees is what the setter left in the flow's context."""
    steps: list[dict[str, object]] = []
    for name in TAG_SETTERS:
        for ref in (name, f"after_{name}"):
            steps.append(
                {"kind": "step", "ref": ref, "in": {"op": "lit", "value": 0}, "out": {"op": "path", "at": f"$.{ref}"}}
            )
    agents = [{"name": name, "kind": "python", "spec": {"callable": f"scope_agents:{name}"}} for name in TAG_SETTERS]
    agents[TAG_SETTERS.index("tag_inline")]["spec"]["inline"] = True  # type: ignore[index]
    agents += [
        {"name": f"after_{name}", "kind": "python", "spec": {"callable": "scope_agents:read_tag"}}
        for name in TAG_SETTERS
    ]
    return {"id": "scopes-contextvars", "flow": {"kind": "seq", "children": steps}, "agents": agents}


async def test_an_agent_sees_its_callers_context_variables_and_keeps_its_own_changes(tmp_path: Path) -> None:
    (tmp_path / "scope_agents.py").write_text(AGENTS)
    compiled = compile_blueprint(tag_blueprint(), base_dir=tmp_path, fns={})
    tag = sys.modules["scope_agents"].tag
    tag.set("the caller's")
    result = await run_blueprint(compiled)
    assert result.status == "done", result.error
    assert result.final_ctx == {
        "tag_at_once": "the caller's",
        "after_tag_at_once": "the caller's",
        "tag_after_await": ["the caller's", "set again by tag_after_await"],
        "after_tag_after_await": "the caller's",
        "tag_inline": "the caller's",
        "after_tag_inline": "the caller's",
        "tag_in_thread": "the caller's",
        "after_tag_in_thread": "the caller's",
    }
    assert tag.get() == "the caller's"
