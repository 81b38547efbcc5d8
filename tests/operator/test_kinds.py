"""Operator kinds of a server run: upstream's four-tier cascade decides whose spawns the operator gates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlua_swarm.core.ctx import OperatorInfo, OperatorKind
from mlua_swarm.core.engine import Engine
from mlua_swarm.ids import RunId
from mlua_swarm.middleware.around import AroundLayer
from mlua_swarm.operator.frames import HookBeforeFrame
from mlua_swarm.operator.hub import OperatorHub
from mlua_swarm.operator.kinds import BadOperatorRequest, RunOperatorSettings, operator_request
from mlua_swarm.operator.layers import RunOperatorLayer, operator_layers
from mlua_swarm.run.launch import run_blueprint
from mlua_swarm.store import LaunchSnapshot, SqliteStore, create_run
from mlua_swarm.store.memory import MemoryStore

from .helpers import LoopbackOperator, compile_with
from .test_hub import FAST

MAIN, AUTO, BOTH = OperatorKind.MAIN_AI, OperatorKind.AUTOMATE, OperatorKind.COMPOSITE


def blueprint(**extra: Any) -> dict[str, Any]:
    """Three Lua steps; `review` is an operator-seat agent only in name (its spec names seat `lead`)."""
    agents = [
        {"name": name, "kind": "lua", "spec": {"source": f"return '{name} ok'"}} for name in ("build", "test", "ship")
    ]
    agents[1]["spec"]["operator_ref"] = "lead"
    children = [
        {
            "kind": "step",
            "ref": a["name"],
            "in": {"op": "lit", "value": a["name"]},
            "out": {"op": "path", "at": f"$.{a['name']}"},
        }
        for a in agents
    ]
    return {"id": "kinds", "flow": {"kind": "seq", "children": children}, "agents": agents, **extra}


def test_the_first_tier_that_names_a_kind_wins() -> None:
    bp = blueprint(operators=[{"name": "lead", "kind": "composite"}], default_operator_kind="automate")
    bare = RunOperatorSettings.of(bp, None)
    assert [bare.kind_of(a) for a in ("build", "test", "ship")] == [AUTO, BOTH, AUTO]
    launched = RunOperatorSettings.of(bp, {"kind": "main_ai", "per_agent_kinds": {"ship": "automate"}})
    assert [launched.kind_of(a) for a in ("build", "test", "ship")] == [MAIN, MAIN, AUTO]
    assert RunOperatorSettings.of(blueprint(), None).kind_of("build") is MAIN, "ours: hooked when nothing says"
    assert RunOperatorSettings.of(blueprint(), {"kind": "automate"}).kind_of("test") is AUTO


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("main_ai", "operator must be an object"),
        ({"kind": "boss"}, "operator.kind must be one of main_ai, automate, composite"),
        ({"per_agent_kinds": {"build": "x"}}, "operator.per_agent_kinds.build must be one of"),
        ({"per_agent_kinds": ["build"]}, "per_agent_kinds must be an object"),
        ({"id": " "}, "operator.id must be a non-blank string"),
    ],
)
def test_a_malformed_operator_object_is_refused(value: Any, message: str) -> None:
    with pytest.raises(BadOperatorRequest, match=message):
        operator_request(value)
    assert operator_request({"kind": "automate", "spawn_hook_id": "h"}) == {"kind": "automate"}
    assert operator_request({}) is None and operator_request(None) is None


class Probe(AroundLayer):
    """Records the operator each attempt's ctx carries, then spawns as usual."""

    name = "probe"

    def __init__(self, seen: dict[str, OperatorInfo]) -> None:
        self.seen = seen

    async def around(self, inner: Any, engine: Any, ctx: Any, task_id: Any, attempt: int, token: Any) -> Any:
        self.seen[ctx.agent] = ctx.operator
        return await inner.spawn(engine, ctx, task_id, attempt, token)


async def test_only_agents_of_a_hooked_kind_wait_for_hook_before_and_the_ctx_carries_the_run_operator_id() -> None:
    hub = OperatorHub(Engine(), MemoryStore(), config=FAST)
    await hub.start()
    session, _ = await hub.join("gatekeeper")
    op = LoopbackOperator(hub, session)
    op.attach()
    run_id = RunId.new()
    raw = blueprint(operators=[{"name": "lead"}], spawner_hints={"layers": ["probe", "main_ai"]})
    await hub.pin(run_id, session.sid, "pinned", None, ["lead"])
    request = {"id": "release-bot", "kind": "automate", "per_agent_kinds": {"ship": "composite"}}
    hub.configure(run_id, RunOperatorSettings.of(raw, request))
    seen: dict[str, OperatorInfo] = {}
    registry = operator_layers(hub)
    registry.add_hint("probe", lambda _engine: RunOperatorLayer(Probe(seen), hub))
    compiled = compile_with(hub, raw)
    run = run_blueprint(compiled, {}, engine=hub.engine, run_id=run_id, registry=registry)

    task = asyncio.create_task(run)
    gate = await op.next()
    assert isinstance(gate, HookBeforeFrame) and gate.agent == "ship" and gate.prompt == "ship"
    op.reply(type="hook_ack", req_id=gate.req_id, ok=True)
    result = await task
    assert result.status == "done", result.error
    assert result.final_ctx == {"build": "build ok", "test": "test ok", "ship": "ship ok"}
    assert {agent: (info.kind, info.id) for agent, info in seen.items()} == {
        "build": (AUTO, "release-bot"),
        "test": (AUTO, "release-bot"),
        "ship": (BOTH, "release-bot"),
    }
    await hub.aclose()


async def test_a_run_launched_elsewhere_has_its_settings_read_from_its_launch_snapshot(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "mse.sqlite3")
    raw = blueprint(operators=[{"name": "lead", "kind": "automate"}])
    launch = LaunchSnapshot(raw, {}, {"operator": {"id": "night-shift", "per_agent_kinds": {"build": "automate"}}})
    run = await create_run(store, launch, goal="kinds")
    hub = OperatorHub(Engine(), store, config=FAST)
    await hub.start()
    settings = await hub.run_settings(run.run_id)
    assert settings.id == "night-shift"
    assert [settings.kind_of(a) for a in ("build", "test", "ship")] == [AUTO, AUTO, MAIN]
    assert await hub.run_settings(RunId.new()) == RunOperatorSettings()
    await hub.aclose()
    await store.close()
