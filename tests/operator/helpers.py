"""Shared pieces of the operator tests: Blueprints with operator agents and an in-process operator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.operator.frames import ServerFrame, parse_server_frame
from mlua_swarm.operator.hub import Connection, OperatorHub, OperatorSession
from mlua_swarm.services import RuntimeServices

RUNNER = {"backend": "ws_operator", "variant": "claude", "tools": []}


def operator_blueprint(*steps: str, seats: tuple[str, ...] = ("main-ai",), **extra: Any) -> dict[str, Any]:
    """A sequence of `operator` steps (agent `name` writes `$.name`), all on the first seat unless `seat:name`."""
    agents, children = [], []
    for entry in steps:
        seat, _, name = entry.rpartition(":")
        agents.append({"name": name, "kind": "operator", "spec": {"operator_ref": seat or seats[0]}, "runner": RUNNER})
        children.append(
            {
                "kind": "step",
                "ref": name,
                "in": {"op": "lit", "value": f"do {name}"},
                "out": {"op": "path", "at": f"$.{name}"},
            }
        )
    flow = children[0] if len(children) == 1 else {"kind": "seq", "children": children}
    return {"id": "ops", "flow": flow, "agents": agents, "operators": [{"name": s} for s in seats], **extra}


def compile_with(hub: OperatorHub | None, raw: dict[str, Any]) -> CompiledBlueprint:
    return compile_blueprint(raw, base_dir=Path.cwd(), services=RuntimeServices(operators=hub))


class LoopbackOperator:
    """An operator attached to the hub without a socket: reads the connection's outbox, replies via `receive`."""

    def __init__(self, hub: OperatorHub, session: OperatorSession) -> None:
        self.hub = hub
        self.session = session
        self.conn: Connection | None = None

    def attach(self) -> None:
        self.conn = self.hub.attach(self.session)

    def detach(self) -> None:
        assert self.conn is not None
        self.hub.detach(self.conn)
        self.conn = None

    async def next(self, timeout: float = 5.0) -> ServerFrame:
        assert self.conn is not None
        text = await asyncio.wait_for(self.conn.outbox.get(), timeout)
        assert text is not None, "the hub closed this connection"
        frame = parse_server_frame(text)
        assert frame is not None, text
        return frame

    def reply(self, **frame: Any) -> None:
        assert self.conn is not None
        self.hub.receive(self.conn, orjson.dumps(frame))


async def on_server(live: Any, fn: Any) -> Any:
    """Await `fn()` on the live server's loop without blocking this test's loop."""

    async def run() -> Any:
        return await fn()

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), live.loop))


async def server_launch(
    live: Any, raw: dict[str, Any], *, sid: str | None = None, desc: str = "pinned by a test", slot: str | None = None
) -> tuple[Any, Any]:
    """Start a run of `raw` on the server's engine (pinned to `sid`); returns (run_id, control, task)."""
    from mlua_swarm.ids import RunId
    from mlua_swarm.operator.layers import operator_layers
    from mlua_swarm.run.launch import RunControl, run_blueprint

    async def go() -> tuple[Any, Any]:
        state = live.state
        hub = state.operators
        compiled = state.compile(raw)
        run_id = RunId.new()
        declared = [op["name"] for op in raw.get("operators", [])]
        if sid is not None:
            await hub.pin(run_id, sid, desc, slot, declared)
        control = RunControl(run_id)
        task = asyncio.create_task(
            run_blueprint(compiled, {}, engine=state.engine, control=control, registry=operator_layers(hub))
        )
        return control, task

    control, task = await on_server(live, go)
    return control, task


async def run_result(live: Any, task: Any) -> Any:
    async def wait() -> Any:
        return await task

    return await on_server(live, wait)
