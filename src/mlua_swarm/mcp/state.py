"""What one `mse mcp` process keeps between tool calls: server clients, its own runs, its sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..core.engine import Engine
from ..operator.client import OperatorClient
from ..operator.frames import SpawnFrame
from ..run import Run, RunResult
from .http import ServerApi, server_url


@dataclass(slots=True)
class LocalRun:
    """An inline or file run executing inside this process."""

    run: Run
    blueprint_id: str | None
    started_at: float = field(default_factory=time.time)
    task: asyncio.Task[RunResult] | None = None
    steps_done: int = 0
    steps_running: set[str] = field(default_factory=set)
    step_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def result(self) -> RunResult | None:
        if self.task is None or not self.task.done() or self.task.cancelled():
            return None
        return self.task.result() if self.task.exception() is None else None


def package_version() -> str:
    """The installed mlua-swarm version ("0" when running from an uninstalled tree)."""
    try:
        return version("mlua-swarm")
    except PackageNotFoundError:
        return "0"


@dataclass(frozen=True, slots=True)
class WorkerRoute:
    """Where a spawn's sub-agent talks to: the session and server that received the spawn, and the spawn."""

    sid: str
    base_url: str
    spawn: SpawnFrame


@dataclass(slots=True)
class McpState:
    """Shared by every tool of one `mse mcp` process."""

    default_server: str = field(default_factory=server_url)
    engine: Engine = field(default_factory=Engine)
    runs: dict[str, LocalRun] = field(default_factory=dict)
    sessions: dict[str, OperatorClient] = field(default_factory=dict)
    """Operator sessions this process joined, by sid (their tokens never leave the process)."""
    routes: dict[str, WorkerRoute] = field(default_factory=dict)
    """Spawns seen by mse_pending_wait, by worker handle (and by capability token)."""
    _apis: dict[str, ServerApi] = field(default_factory=dict)

    def api(self, bind: str | None = None) -> ServerApi:
        """The client for `bind` (or the default server), created once per base URL."""
        base = server_url(bind) if bind else self.default_server
        api = self._apis.get(base)
        if api is None:
            api = self._apis[base] = ServerApi(base)
        return api

    def auto_pin(self, bind: str | None, pin: dict[str, Any], blueprint_id: str) -> dict[str, Any]:
        """The operator pin of a run by id: the given sid, else this process's only session on that
        server; a description is filled in when missing."""
        base = server_url(bind) if bind else self.default_server
        if not pin.get("operator_sid"):
            mine = [sid for sid, client in self.sessions.items() if client.base_url == base]
            if len(mine) != 1:
                return pin
            pin = {**pin, "operator_sid": mine[0]}
        if not pin.get("operator_desc"):
            # The seat names its holder as the session joined (mse_operator_join's desc).
            joined = self.sessions.get(str(pin["operator_sid"]))
            desc = joined.desc if joined is not None and joined.desc else f"driving {blueprint_id} through mse mcp"
            pin = {**pin, "operator_desc": desc}
        return pin

    def forget_routes(self, keep: Callable[[WorkerRoute], bool]) -> None:
        """Drop the worker routes `keep` rejects."""
        for key, route in list(self.routes.items()):
            if not keep(route):
                del self.routes[key]

    async def aclose(self) -> None:
        for run in self.runs.values():
            if run.task is not None and not run.task.done():
                run.run.cancel("mse mcp is shutting down")
        pending = [r.task for r in self.runs.values() if r.task is not None and not r.task.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for client in self.sessions.values():
            await client.aclose()
        for api in self._apis.values():
            await api.aclose()


__all__ = ["LocalRun", "McpState", "WorkerRoute", "package_version"]
