"""Shared pieces of the operator tests: Blueprints with operator agents and an in-process operator."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from mlua_swarm.blueprint.compiler import CompiledBlueprint, compile_blueprint
from mlua_swarm.operator.frames import ServerFrame, parse_server_frame
from mlua_swarm.operator.hub import Connection, OperatorHub, OperatorSession
from mlua_swarm.services import RuntimeServices
from tests.conftest import SIGINT_AT_DEFAULT
from tests.ptyterm import PtyProcess
from tests.serverkit import SRC

RUNNER = {"backend": "ws_operator", "variant": "claude", "tools": []}

HOOKED_SHIP: dict[str, Any] = {
    "id": "gated",
    "flow": {
        "kind": "step",
        "ref": "ship",
        "in": {"op": "path", "at": "$.plan"},
        "out": {"op": "path", "at": "$.shipped"},
    },
    "agents": [{"name": "ship", "kind": "lua", "spec": {"source": "return 'shipped ' .. _PROMPT"}}],
    "operators": [{"name": "main-ai"}],
    "spawner_hints": {"layers": ["main_ai"]},
}
"""One Lua step behind the `main_ai` layer: the run's operator approves it (`hook_before`) first."""


def join_in_terminal(live: Any, home: Path, *extra: str) -> tuple[PtyProcess, str]:
    """`mse operator join --server LIVE` on a pseudo-terminal (MSE_HOME `home`), once it waits for
    requests: the terminal (the caller closes it) and its session id."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "xterm", "COLUMNS": "120", "MSE_HOME": str(home)}
    argv = [sys.executable, "-c", SIGINT_AT_DEFAULT, "operator", "join", "--server", live.base_url, *extra]
    term = PtyProcess(argv, env)
    try:
        sid = term.expect(r"session (S-[0-9a-f]+)").group(1)
        term.expect("waiting for requests")
    except BaseException:
        term.close()
        raise
    return term, sid


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
    live: Any,
    raw: dict[str, Any],
    *,
    sid: str | None = None,
    desc: str = "pinned by a test",
    slot: str | None = None,
    init_ctx: Any = None,
    **task: Any,
) -> str:
    """Launch `raw` detached through `POST /v1/tasks` (its seats pinned to `sid`; `task`: more body
    fields, such as `goal` or `work_dir`); the run id."""
    body: dict[str, Any] = {
        "blueprint": {"kind": "inline", "value": raw},
        "init_ctx": init_ctx or {},
        "detach": True,
        **task,
    }
    if sid is not None:
        body.update({"operator_sid": sid, "operator_desc": desc, "operator_slot": slot})
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        answer = await http.post("/v1/tasks", json=body)
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


async def run_result(live: Any, run_id: str) -> dict[str, Any]:
    """Wait for the run to end on the server; its record as `GET /v1/runs/{id}` shows it."""

    async def ended() -> None:
        running = live.state.runs.live.get(run_id)
        if running is not None and running.task is not None:
            await asyncio.wait([running.task])

    await on_server(live, ended)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        record: dict[str, Any] = (await http.get(f"/v1/runs/{run_id}")).json()
    return record
