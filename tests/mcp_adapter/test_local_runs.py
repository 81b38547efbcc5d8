"""Long local runs: progress notifications, detach, swarm_cancel and the client's own cancellation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from tests.mcp_adapter.conftest import mse_mcp, payload
from tests.process.helpers import watch_exit


def sleeper_blueprint(fifo: Path) -> dict[str, Any]:
    """One step whose child process reports its pid through `fifo`, then sleeps until killed."""
    script = f"echo $$ > {fifo}; exec sleep 1000"
    return {
        "id": "sleeper",
        "flow": {
            "kind": "seq",
            "children": [
                {"kind": "step", "ref": "first", "in": {"op": "lit", "value": "x"}, "out": {"op": "path", "at": "$.a"}},
                {"kind": "step", "ref": "sleep", "in": {"op": "path", "at": "$.a"}, "out": {"op": "path", "at": "$.b"}},
            ],
        },
        "agents": [
            {"name": "first", "kind": "lua", "spec": {"source": "return 'ok'"}},
            {"name": "sleep", "kind": "subprocess", "spec": {"program": "sh", "args": ["-c", script]}},
        ],
    }


async def read_pid(fifo: Path) -> int:
    with anyio.fail_after(60):
        return int((await anyio.to_thread.run_sync(fifo.read_text, abandon_on_cancel=True)).strip())


async def test_detached_run_is_cancelled_for_real(tmp_path: Path) -> None:
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    async with mse_mcp(tmp_path) as client:
        started = payload(await client.call_tool("swarm_run", {"blueprint": sleeper_blueprint(fifo), "detach": True}))
        assert started["status"] == "running"
        pid = await read_pid(fifo)
        async with watch_exit(pid) as exited:
            status = payload(await client.call_tool("swarm_status", {"run_id": started["run_id"]}))
            assert status["status"] == "running" and status["steps_running"] == ["sleep"]
            cancelled = payload(await client.call_tool("swarm_cancel", {"run_id": started["run_id"]}))
            with anyio.fail_after(30):
                await exited
        assert cancelled["status"] == "cancelled"


async def test_blocking_run_reports_progress_and_stops_when_the_client_cancels(tmp_path: Path) -> None:
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    sleeping_reported = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and "running: sleep" in message:
            sleeping_reported.set()

    async with mse_mcp(tmp_path) as client, anyio.create_task_group() as tg:
        pid_box: list[int] = []
        got_pid = anyio.Event()

        async def call() -> None:
            await client.call_tool("swarm_run", {"blueprint": sleeper_blueprint(fifo)}, progress_callback=on_progress)

        async def pid_reader() -> None:
            pid_box.append(await read_pid(fifo))
            got_pid.set()

        tg.start_soon(pid_reader)
        scope = anyio.CancelScope()
        tg.start_soon(_cancellable, call, scope)
        await got_pid.wait()
        with anyio.fail_after(30):
            await sleeping_reported.wait()
        async with watch_exit(pid_box[0]) as exited:
            scope.cancel()
            with anyio.fail_after(30):
                await exited


async def _cancellable(call: Any, scope: anyio.CancelScope) -> None:
    with scope:
        await call()
