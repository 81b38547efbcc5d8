"""The `ray` agent kind on a real local Ray cluster: values, errors, cancel, timeout, retries, fanout."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.blueprint.compiler import compile_blueprint
from mlua_swarm.core.config import EngineConfig
from mlua_swarm.core.engine import Engine, TaskSpec
from mlua_swarm.diagnostics import DiagnosticError
from mlua_swarm.errors import DispatchFailed
from mlua_swarm.run.launch import run_blueprint
from mlua_swarm.tokens import CapToken, Role
from mlua_swarm.worker.kinds import LinkEnv, agent_kind, is_runnable
from mlua_swarm.worker.ray import RaySpawner

from ..conftest import alive
from .ray_helpers import AGENTS, agent, arrived, blueprint, step, write_agents

pytestmark = pytest.mark.usefixtures("ray_address")


def spawner(folder: Path, fn: str, **spec: Any) -> RaySpawner:
    write_agents(folder)
    kind = agent_kind("ray")
    assert kind is not None
    built = kind.build(agent(fn, **spec), LinkEnv(base_dir=folder))
    assert isinstance(built, RaySpawner)
    return built


async def run(folder: Path, bp: dict[str, Any], init: Any) -> Any:
    write_agents(folder)
    return await run_blueprint(compile_blueprint(bp, base_dir=folder), init)


async def test_a_ray_step_calls_the_function_on_a_ray_worker_with_the_attempts_token(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    built = spawner(tmp_path, "echo")
    step_id = await engine.start_task(op, TaskSpec("echo", {"q": [1, 2]}))
    outcome = await engine.run_step(op, step_id, built)
    assert outcome.kind == "pass"
    value = outcome.value
    assert value["input"] == {"q": [1, 2]} and value["prompt"] == '{"q":[1,2]}'
    assert (value["agent"], value["attempt"], value["task_id"]) == ("echo", 1, str(step_id))
    assert value["pid"] != os.getpid()
    token = CapToken.decode(value["token"])
    assert token.role is Role.WORKER and token.agent_id == f"worker-of-{step_id}"
    stats = engine.worker_stats(step_id, 1)
    assert stats["worker_kind"] == "ray" and stats["ray_task_id"] == value["ray_task"]


async def test_an_async_function_and_a_blueprint_run(tmp_path: Path) -> None:
    bp = blueprint(
        {"kind": "seq", "children": [step("echo_async", "$.in", "$.a"), step("square", "$.n", "$.b")]},
        agent("echo_async"),
        agent("square", num_cpus=0.5),
    )
    result = await run(tmp_path, bp, {"in": "hello", "n": 7})
    assert result.status == "done", result.error
    assert result.final_ctx["a"]["input"] == "hello" and result.final_ctx["a"]["pid"] != os.getpid()
    assert result.final_ctx["b"] == 49


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        ("fail", "ValueError: no good: 3 (raised on the Ray worker at ray_test_agents.py:"),
        ("exits", "SystemExit: 3 (raised on the Ray worker at ray_test_agents.py:"),
        (
            "lock",
            "the Ray task failed outside the agent's function (sending its input or its result): "
            "TypeError: cannot pickle '_thread.lock' object",
        ),
        ("a_set", "the worker's result is refused"),
    ],
)
async def test_what_goes_wrong_on_the_worker_fails_the_attempt_saying_what(
    engine: Engine, op: CapToken, tmp_path: Path, fn: str, message: str
) -> None:
    step_id = await engine.start_task(op, TaskSpec(fn, 3))
    with pytest.raises(DispatchFailed) as raised:
        await engine.run_step(op, step_id, spawner(tmp_path, fn))
    assert message in str(raised.value)
    assert engine.read_task_state(op, step_id).status == "failed"


async def test_a_remote_error_names_the_line_that_raised(tmp_path: Path) -> None:
    result = await run(tmp_path, blueprint(step("fail"), agent("fail")), {"in": "x"})
    assert result.status == "failed"
    line = next(n for n, text in enumerate(AGENTS.splitlines(), 1) if "raise ValueError" in text)
    assert f"ValueError: no good: x (raised on the Ray worker at ray_test_agents.py:{line} in fail)" in str(
        result.error
    )


async def test_a_module_the_worker_cannot_import_fails_the_attempt_saying_so(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    kind = agent_kind("ray")
    assert kind is not None
    spec = {"callable": "cluster_only_module:fn", "runtime_env": {}}  # a runtime_env: left to the workers
    built = kind.build({"name": "far", "kind": "ray", "spec": spec}, LinkEnv(base_dir=tmp_path))
    step_id = await engine.start_task(op, TaskSpec("far", 1))
    with pytest.raises(DispatchFailed) as raised:
        await engine.run_step(op, step_id, built)
    assert (
        "cannot import 'cluster_only_module:fn' on the Ray worker: ModuleNotFoundError: "
        "No module named 'cluster_only_module'"
    ) in str(raised.value)


async def test_cancel_interrupts_the_running_task(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    step_id = await engine.start_task(op, TaskSpec("sleeper", {"dir": str(tmp_path), "tag": "c"}))
    dispatch = asyncio.create_task(engine.dispatch_attempt(op, step_id, spawner(tmp_path, "sleeper")))
    await arrived(tmp_path / "c.started")
    await engine.cancel_task(op, step_id)
    outcome = await asyncio.wait_for(dispatch, 30)
    assert outcome.kind == "cancelled" and engine.read_task_state(op, step_id).status == "cancelled"
    await arrived(tmp_path / "c.interrupted")
    assert not (tmp_path / "c.finished").exists()
    assert engine.worker_stats(step_id, 1)["ray_cancel"] == "graceful"


async def test_a_timeout_interrupts_the_task_and_ends_the_step_timeout(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    step_id = await engine.start_task(op, TaskSpec("sleeper", {"dir": str(tmp_path), "tag": "t"}, timeout_secs=2))
    outcome = await asyncio.wait_for(engine.run_step(op, step_id, spawner(tmp_path, "sleeper")), 30)
    assert outcome.kind == "timeout" and engine.read_task_state(op, step_id).status == "timeout"
    await arrived(tmp_path / "t.interrupted")
    assert not (tmp_path / "t.finished").exists()


async def test_a_task_ignoring_the_graceful_cancel_has_its_worker_killed(op: CapToken, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(cancel_grace_secs=0.3))
    op = engine.attach("op")
    step_id = await engine.start_task(op, TaskSpec("stubborn", {"dir": str(tmp_path)}))
    dispatch = asyncio.create_task(engine.dispatch_attempt(op, step_id, spawner(tmp_path, "stubborn")))
    await arrived(tmp_path / "stubborn.started")
    pid = int((tmp_path / "stubborn.started").read_text())
    await engine.cancel_task(op, step_id)
    outcome = await asyncio.wait_for(dispatch, 30)
    assert outcome.kind == "cancelled"
    assert (tmp_path / "stubborn.ignored").exists()
    assert engine.worker_stats(step_id, 1)["ray_cancel"] == "forced"
    for _ in range(1500):  # the raylet reaps the killed worker shortly after
        if not alive(pid):
            break
        await asyncio.sleep(0.02)
    assert not alive(pid)


async def test_each_retry_is_a_new_ray_task_with_a_fresh_token(engine: Engine, op: CapToken, tmp_path: Path) -> None:
    log = tmp_path / "attempts.jsonl"
    retry = {"max_attempts": 3, "on": ["failed"]}
    step_id = await engine.start_task(op, TaskSpec("flaky", {"log": str(log)}, retry=retry))
    outcome = await engine.run_step(op, step_id, spawner(tmp_path, "flaky"))
    assert (outcome.kind, outcome.value, outcome.attempt) == ("pass", 3, 3)
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert len({a["token"] for a in attempts}) == 3 and len({a["ray_task"] for a in attempts}) == 3
    nonces = {CapToken.decode(a["token"]).nonce for a in attempts}
    assert len(nonces) == 3


async def test_a_fanout_of_a_hundred_ray_lanes(tmp_path: Path) -> None:
    fanout = {
        "kind": "fanout",
        "items": {"op": "path", "at": "$.xs"},
        "bind": {"op": "path", "at": "$.x"},
        "body": step("square", "$.x", "$.y"),
        "join": "all",
        "collect": {"op": "path", "at": "$.y"},
        "out": {"op": "path", "at": "$.ys"},
    }
    result = await run(tmp_path, blueprint(fanout, agent("square")), {"xs": list(range(100))})
    assert result.status == "done", result.error
    assert result.final_ctx["ys"] == [x * x for x in range(100)]


async def test_a_race_cancels_the_losing_lanes_task(tmp_path: Path) -> None:
    lane = {"dir": str(tmp_path)}
    fanout = {
        "kind": "fanout",
        "items": {"op": "path", "at": "$.lanes"},
        "bind": {"op": "path", "at": "$.lane"},
        "body": step("sleeper", "$.lane", "$.won"),
        "join": "race",
        "collect": {"op": "path", "at": "$.won"},
        "out": {"op": "path", "at": "$.winner"},
    }
    lanes = [{**lane, "tag": "slow", "secs": 60}, {**lane, "tag": "quick", "secs": 0, "after": "slow.started"}]
    result = await asyncio.wait_for(run(tmp_path, blueprint(fanout, agent("sleeper")), {"lanes": lanes}), 60)
    assert result.status == "done", result.error
    assert result.final_ctx["winner"] == "quick"
    await arrived(tmp_path / "slow.interrupted")
    assert not (tmp_path / "slow.finished").exists()


async def test_an_address_other_than_the_process_connection_fails_the_attempt(
    engine: Engine, op: CapToken, tmp_path: Path
) -> None:
    step_id = await engine.start_task(op, TaskSpec("square", 2))
    with pytest.raises(DispatchFailed) as raised:
        await engine.run_step(op, step_id, spawner(tmp_path, "square", address="auto"))
    error = str(raised.value)
    assert "connected to Ray before its first ray agent ran; spec.address 'auto' cannot be honoured" in error


# ── compile time and installation ────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("spec", "message", "hint"),
    [
        ({}, "needs spec.callable", "package.module:function"),
        ({"callable": "nocolon"}, "spec.callable must be 'module:attr'", None),
        ({"callable": "no_such_module_here:fn"}, "cannot import 'no_such_module_here:fn'", "spec.runtime_env"),
        ({"callable": "ray_test_agents:nope"}, "cannot import 'ray_test_agents:nope'", "name after ':'"),
        ({"callable": "ray_test_agents:square", "num_cpus": -1}, "spec.num_cpus must be a number >= 0", None),
        ({"callable": "ray_test_agents:square", "num_gpus": "1"}, "spec.num_gpus must be a number >= 0", None),
        ({"callable": "ray_test_agents:square", "memory": 0}, "spec.memory must be a positive number", "bytes"),
        ({"callable": "ray_test_agents:square", "resources": {"CPU": 1}}, "spec.resources.CPU", "spec.num_cpus"),
        ({"callable": "ray_test_agents:square", "resources": {"tpu": -2}}, "spec.resources.tpu must be", None),
        ({"callable": "ray_test_agents:square", "runtime_env": []}, "spec.runtime_env must be an object", None),
        ({"callable": "ray_test_agents:square", "address": ""}, "spec.address must be a non-empty string", "ray://"),
        ({"callable": "ray_test_agents:square", "connect_timeout_secs": 0}, "connect_timeout_secs", None),
        ({"callable": "ray_test_agents:square", "kill_grace_secs": -1}, "kill_grace_secs", None),
        ({"callable": "ray_test_agents:square", "cpus": 1}, "unknown spec key(s) cpus", "allowed: address"),
    ],
)
def test_a_bad_spec_fails_at_compile_time(tmp_path: Path, spec: dict[str, Any], message: str, hint: str | None) -> None:
    write_agents(tmp_path)
    raw = blueprint(step("a"), {"name": "a", "kind": "ray", "spec": spec})
    with pytest.raises(DiagnosticError) as raised:
        compile_blueprint(raw, base_dir=tmp_path)
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "invalid-agent-spec" and "at $.agents[0].spec" in diagnostic.location.describe()
    assert message in diagnostic.message
    if hint is not None:
        assert diagnostic.hint is not None and hint in diagnostic.hint


def test_two_agents_naming_different_addresses_fail_at_compile_time(tmp_path: Path) -> None:
    write_agents(tmp_path)
    flow = {"kind": "seq", "children": [step("a"), step("b")]}
    raw = blueprint(flow, agent("a", "square", address="ray://head:10001"), agent("b", "square"))
    with pytest.raises(DiagnosticError) as raised:
        compile_blueprint(raw, base_dir=tmp_path)
    messages = [d.message for d in raised.value.diagnostics]
    assert any(
        "name different Ray addresses ('ray://head:10001' and RAY_ADDRESS or a local instance)" in m for m in messages
    )


def test_a_module_found_only_on_the_cluster_compiles_with_a_runtime_env(tmp_path: Path) -> None:
    raw = blueprint(step("a"), agent("a", "square", runtime_env={"working_dir": "code"}))
    raw["agents"][0]["spec"]["callable"] = "cluster_only_module:fn"
    compiled = compile_blueprint(raw, base_dir=tmp_path)
    built = compiled.agents["a"].spawner
    assert isinstance(built, RaySpawner)
    assert built.options["runtime_env"] == {"working_dir": str(tmp_path / "code")}


def test_without_ray_lint_accepts_and_a_run_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_agents(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)
    assert not is_runnable("ray")
    compiled = compile_blueprint(blueprint(step("square"), agent("square")), base_dir=tmp_path)
    with pytest.raises(DiagnosticError) as raised:
        asyncio.run(run_blueprint(compiled, {"in": 2}))
    (diagnostic,) = raised.value.diagnostics
    assert diagnostic.code == "kind-unavailable"
    assert (
        "agent kind 'ray' needs the ray package: pip install 'mlua-swarm[ray]' (agents: square)" in diagnostic.message
    )
