"""Lua workers through the real engine: globals, bridges, return conventions, errors, sandbox, budgets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.ctx import AgentContextView, Ctx
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.ids import StepId
from mlua_swarm.tokens import CapToken
from mlua_swarm.worker import Worker
from mlua_swarm.worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation
from mlua_swarm.worker.kinds import InvalidAgentSpec, LinkEnv, agent_kind
from mlua_swarm.worker.lua import LuaKind, LuaSpawner, LuaWorker

from ..conftest import run_one


def lua_agent(source: str, name: str = "a", kind: LuaKind | None = None, **spec: Any) -> LuaSpawner:
    return (kind or LuaKind()).build({"name": name, "kind": "lua", "spec": {"source": source, **spec}}, LinkEnv())


async def run_lua(engine: Engine, op: CapToken, source: str, directive: Any = "", **kw: Any) -> Any:
    return await run_one(engine, op, lua_agent(source, **kw), TaskSpec("a", directive))


class WithRuntime(SpawnerAdapter):
    """Stands in for the agent-context middleware: puts keys into `ctx.meta.runtime` before spawning."""

    def __init__(self, inner: SpawnerAdapter, runtime: Mapping[str, Any]) -> None:
        self.inner = inner
        self.runtime = runtime

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        edited = ctx.clone()
        edited.meta.runtime.update(self.runtime)
        return await self.inner.spawn(engine, edited, task_id, attempt, token)


def test_the_lua_kind_is_built_in() -> None:
    assert isinstance(agent_kind("lua"), LuaKind)


async def test_globals_describe_the_attempt(engine: Engine, op: CapToken) -> None:
    source = """return { value = {
        prompt = _PROMPT, agent = _AGENT, task = _TASK_ID, attempt = _ATTEMPT, ctx = _CTX,
        ctx_type = math.type(_ATTEMPT) } }"""
    step = await engine.start_task(op, TaskSpec("a", {"x": 1, "y": [1.5, "z"]}))
    outcome = await engine.run_step(op, step, lua_agent(source))
    assert outcome.kind == "pass"
    assert outcome.value == {
        "prompt": '{"x":1,"y":[1.5,"z"]}',
        "agent": "a",
        "task": str(step),
        "attempt": 1,
        "ctx": {"x": 1, "y": [1.5, "z"]},
        "ctx_type": "integer",
    }


async def test_ctx_is_nil_when_the_prompt_is_not_json(engine: Engine, op: CapToken) -> None:
    outcome = await run_lua(engine, op, "return { value = { nil_ctx = _CTX == nil, prompt = _PROMPT } }", "hello")
    assert outcome.value == {"nil_ctx": True, "prompt": "hello"}


async def test_task_metadata_and_agent_ctx_come_from_the_context_view(engine: Engine, op: CapToken) -> None:
    view = AgentContextView(StepId.new(), "a", 1, task_metadata={"ticket": "T-1"}, extra={"tone": "terse"})
    spawner = WithRuntime(lua_agent("return { meta = _TASK_METADATA, actx = _AGENT_CTX }"), {"agent_context": view})
    outcome = await run_one(engine, op, spawner, TaskSpec("a", "x"))
    assert outcome.value == {"meta": {"ticket": "T-1"}, "actx": {"tone": "terse"}}


async def test_absent_metadata_and_agent_ctx_are_nil(engine: Engine, op: CapToken) -> None:
    outcome = await run_lua(engine, op, "return { value = { _TASK_METADATA == nil, _AGENT_CTX == nil } }")
    assert outcome.value == [True, True]


@pytest.mark.parametrize(
    ("source", "kind", "value"),
    [
        ("return { value = 'v', ok = true }", "pass", "v"),
        ("return { value = 'why', ok = false }", "blocked", "why"),
        ("return { ok = false }", "blocked", {"ok": False}),
        ("return { value = { n = 1 } }", "pass", {"n": 1}),
        ("return { answer = 42 }", "pass", {"answer": 42}),
        ("return 'plain'", "pass", "plain"),
        ("return 7", "pass", 7),
        ("return 2.5", "pass", 2.5),
        ("return {}", "pass", []),
        ("return nil", "pass", None),
    ],
)
async def test_return_conventions(engine: Engine, op: CapToken, source: str, kind: str, value: Any) -> None:
    outcome = await run_lua(engine, op, source)
    assert (outcome.kind, outcome.value) == (kind, value)


async def test_a_non_boolean_ok_fails_the_attempt(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[a\.lua\]: the returned `ok` must be a boolean"):
        await run_lua(engine, op, "return { value = 1, ok = 'yes' }")


async def test_a_lua_error_is_a_labelled_worker_failure(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[digest\.lua\]: digest\.lua:2: boom"):
        await run_lua(engine, op, "local x = 1\nerror('boom')", label="digest.lua")


async def test_an_unconvertible_result_is_a_worker_failure(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[a\.lua\]: the result cannot be converted.*function"):
        await run_lua(engine, op, "return { f = print }")


async def test_host_bridges_take_and_return_json(engine: Engine, op: CapToken) -> None:
    def lookup(arg: Any) -> Any:
        return {"user": arg["id"], "roles": ["dev", "ops"]}

    def broken(arg: Any) -> Any:
        raise ValueError("backend down")

    kind = LuaKind(bridges={"lookup": lookup, "broken": broken})
    source = """
        local u = host.lookup({ id = 7 })
        local ok, err = pcall(host.broken, {})
        return { user = u.user, second_role = u.roles[2], ok = ok, err = err }"""
    outcome = await run_lua(engine, op, source, kind=kind)
    assert outcome.kind == "blocked"
    assert outcome.value == {
        "user": 7,
        "second_role": "ops",
        "ok": False,
        "err": "host.broken: ValueError: backend down",
    }


async def test_staged_parts_fold_into_out_and_parts(engine: Engine, op: CapToken) -> None:
    source = "mse.stage('verdict', 'PASS') return 'all good'"
    outcome = await run_lua(engine, op, source)
    assert outcome.value == {"out": "all good", "parts": {"verdict": "PASS"}}


async def test_staged_verdict_satisfies_a_part_contract(engine: Engine, op: CapToken) -> None:
    spec = TaskSpec("a", "", verdict={"channel": "part", "values": ["PASS", "FAIL"]})
    outcome = await run_one(engine, op, lua_agent("mse.stage('verdict', 'FAIL') return 'report'"), spec)
    assert outcome.value == {"out": "report", "parts": {"verdict": "FAIL"}}


ESCAPES = [
    ("os.execute('echo escaped')", "os is not available to a sandboxed lua worker"),
    ("io.open('/etc/passwd')", "io is not available to a sandboxed lua worker"),
    ("require 'os'", "module 'os' not found"),
    ("require 'io'", "module 'io' not found"),
    ("debug.getinfo(1)", "attempt to index a nil value (global 'debug')"),
    ("dofile('/etc/passwd')", "dofile is not available to a sandboxed lua worker"),
    ("loadfile('/etc/passwd')", "loadfile is not available to a sandboxed lua worker"),
    ("string.dump(function() end)", "attempt to call a nil value (field 'dump')"),
    ("('').dump(function() end)", "attempt to call a nil value (field 'dump')"),
    ("assert(load('\\27Lua\\84\\0', 'x', 'b'))", "attempt to load a binary chunk"),
    ("getmetatable('').__index.dump = 1", "attempt to index a boolean value"),
    ("python.eval('1')", "attempt to index a nil value (global 'python')"),
    ("setmetatable({}, { __gc = function() end })", "__gc metamethods are not allowed"),
    ("collectgarbage('stop')", "only 'collect' and 'count' are allowed"),
    ("local f = host.probe; return f.__class__", "attempt to index a function value"),
]


@pytest.mark.parametrize(("source", "message"), ESCAPES, ids=[s for s, _ in ESCAPES])
async def test_sandbox_escapes_are_refused(engine: Engine, op: CapToken, source: str, message: str) -> None:
    kind = LuaKind(bridges={"probe": lambda arg: arg})
    with pytest.raises(DispatchFailed) as raised:
        await run_lua(engine, op, source, kind=kind)
    assert message in str(raised.value)


async def test_one_script_cannot_change_the_library_of_the_next(engine: Engine, op: CapToken) -> None:
    kind = LuaKind()
    first = await run_lua(engine, op, "string.upper = nil; leaked = 1; return 'done'", kind=kind)
    second = await run_lua(engine, op, "return { string.upper('x'), ('y'):upper(), leaked == nil }", kind=kind)
    assert (first.value, second.value) == ("done", ["X", "Y", True])


async def test_step_timeout_stops_an_endless_loop_while_other_steps_run(engine: Engine, op: CapToken) -> None:
    loop = asyncio.get_running_loop()
    spinning_now = asyncio.Event()
    kind = LuaKind(bridges={"started": lambda: loop.call_soon_threadsafe(spinning_now.set)})
    loop_step = await engine.start_task(op, TaskSpec("spin", "", timeout_secs=2.0))
    quick_step = await engine.start_task(op, TaskSpec("quick", "hi"))
    spin = lua_agent("host.started() while true do end", name="spin", kind=kind)
    spinning = asyncio.create_task(engine.run_step(op, loop_step, spin))
    async with asyncio.timeout(10):
        await spinning_now.wait()
        quick = await engine.run_step(op, quick_step, lua_agent("return _PROMPT .. '!'", name="quick"))
        assert quick.value == "hi!"
        assert not spinning.done()
        outcome = await spinning
    assert outcome.kind == "timeout"
    assert engine.read_task_state(op, loop_step).status.value == "timeout"


async def test_pcall_cannot_swallow_the_timeout(engine: Engine, op: CapToken) -> None:
    source = """
        while true do
          pcall(function() while true do end end)
          xpcall(function() while true do end end, function(e) while true do end end)
          coroutine.resume(coroutine.create(function() while true do end end))
        end"""
    async with asyncio.timeout(10):
        outcome = await run_one(engine, op, lua_agent(source), TaskSpec("a", "", timeout_secs=0.3))
    assert outcome.kind == "timeout"


async def test_cancel_task_stops_a_running_script(engine: Engine, op: CapToken) -> None:
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def mark_started() -> None:
        loop.call_soon_threadsafe(started.set)

    kind = LuaKind(bridges={"started": mark_started})
    step = await engine.start_task(op, TaskSpec("a", ""))
    running = asyncio.create_task(engine.run_step(op, step, lua_agent("host.started() while true do end", kind=kind)))
    async with asyncio.timeout(10):
        await started.wait()
        await engine.cancel_task(op, step)
        outcome = await running
    assert outcome.kind == "cancelled"


class Capture(SpawnerAdapter):
    """Passes spawns through and hands each worker to the test."""

    def __init__(self, inner: SpawnerAdapter) -> None:
        self.inner = inner
        self.workers: asyncio.Queue[Worker] = asyncio.Queue()

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        worker = await self.inner.spawn(engine, ctx, task_id, attempt, token)
        self.workers.put_nowait(worker)
        return worker


async def test_firing_the_worker_token_stops_the_script(engine: Engine, op: CapToken) -> None:
    capture = Capture(lua_agent("while true do end"))
    step = await engine.start_task(op, TaskSpec("a", ""))
    running = asyncio.create_task(engine.run_step(op, step, capture))
    async with asyncio.timeout(10):
        worker = await capture.workers.get()
        worker.cancel_token().cancel()
        outcome = await running
    assert isinstance(worker, LuaWorker)
    assert outcome.kind == "cancelled"


async def test_instruction_budget_ends_a_runaway_script(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[a\.lua\]: instruction budget exceeded"):
        await run_lua(engine, op, "while true do end", limits={"instructions": 1_000_000})


async def test_wall_time_budget_ends_a_runaway_script(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[a\.lua\]: wall-time budget exceeded"):
        await run_lua(engine, op, "while true do end", limits={"wall_secs": 0.2, "instructions": None})


async def test_memory_budget_ends_a_hungry_script(engine: Engine, op: CapToken) -> None:
    with pytest.raises(DispatchFailed, match=r"lua eval \[a\.lua\]: not enough memory"):
        await run_lua(engine, op, "return #string.rep('x', 64 * 1024 * 1024)", limits={"memory_bytes": 8 << 20})


async def test_stats_name_the_kind(engine: Engine, op: CapToken) -> None:
    step = await engine.start_task(op, TaskSpec("a", ""))
    await engine.run_step(op, step, lua_agent("local n = 0 for i = 1, 100000 do n = n + i end return n"))
    stats = engine.worker_stats(step, 1)
    assert stats["worker_kind"] == "lua"
    assert stats["lua_instructions"] > 0


def test_spec_needs_source_or_a_registered_script() -> None:
    with pytest.raises(InvalidAgentSpec, match=r"needs spec\.source"):
        LuaKind().build({"name": "a", "kind": "lua", "spec": {}}, LinkEnv())
    with pytest.raises(InvalidAgentSpec, match="script id 'nope' is not registered"):
        LuaKind().build({"name": "a", "kind": "lua", "spec": {"fn_id": "nope"}}, LinkEnv())


def test_a_syntax_error_fails_at_build_with_the_line() -> None:
    with pytest.raises(InvalidAgentSpec, match=r"does not compile: a\.lua:2: unexpected symbol"):
        lua_agent("local x = 1\nx = = 2")


def test_bad_limits_are_refused() -> None:
    with pytest.raises(InvalidAgentSpec, match=r"spec\.limits takes only"):
        lua_agent("return 1", limits={"cpu": 1})
    with pytest.raises(InvalidAgentSpec, match="must be a positive number"):
        lua_agent("return 1", limits={"wall_secs": 0})


async def test_registered_scripts_run_by_fn_id(engine: Engine, op: CapToken) -> None:
    kind = LuaKind(scripts={"shout": "return string.upper(_PROMPT)"})
    spawner = kind.build({"name": "a", "kind": "lua", "spec": {"fn_id": "shout"}}, LinkEnv())
    outcome = await run_one(engine, op, spawner, TaskSpec("a", "hey"))
    assert outcome.value == "HEY"


async def test_a_python_worker_and_a_lua_worker_share_the_engine(engine: Engine, op: CapToken) -> None:
    """The Lua kind composes with the other in-process kinds in one engine."""

    async def py(inv: WorkerInvocation) -> Any:
        return inv.input["n"] + 1

    first = await run_one(engine, op, InProcSpawner().register("p", py), TaskSpec("p", {"n": 1}))
    second = await run_one(engine, op, lua_agent("return _CTX.n * 10"), TaskSpec("a", {"n": first.value}))
    assert second.value == 20


async def test_spec_bridges_import_python_functions_from_the_blueprint_folder(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    (tmp_path / "lua_bridge_tools.py").write_text("def twice(x):\n    return x * 2\n", encoding="utf-8")
    spec = {"source": "return host.twice(21)", "bridges": {"twice": "lua_bridge_tools:twice"}}
    spawner = LuaKind().build({"name": "a", "kind": "lua", "spec": spec}, LinkEnv(base_dir=tmp_path))
    outcome = await run_one(engine, op, spawner, TaskSpec("a", ""))
    assert outcome.value == 42


def test_spec_bridges_that_do_not_import_are_refused(tmp_path: Path) -> None:
    spec = {"source": "return 1", "bridges": {"x": "no_such_module_here:f"}}
    with pytest.raises(InvalidAgentSpec, match="cannot import bridge 'x'"):
        LuaKind().build({"name": "a", "kind": "lua", "spec": spec}, LinkEnv(base_dir=tmp_path))
    with pytest.raises(InvalidAgentSpec, match="'module:function' strings"):
        LuaKind().build({"name": "a", "kind": "lua", "spec": {"source": "return 1", "bridges": ["x"]}}, LinkEnv())
