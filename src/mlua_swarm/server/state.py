"""What every route reaches through `request.app.state.server`: one engine, the store, the runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from ..blueprint.compiler import CompiledBlueprint, compile_blueprint, fn_registry
from ..core.config import EngineConfig
from ..core.engine import Engine
from ..operator.hub import OperatorHub, OperatorHubConfig
from ..services import RuntimeServices
from ..store import Store, open_store
from ..store.base import blueprint_hash
from .auth import OWN_CREDENTIAL_PREFIXES, HandleMemory, LoginThrottle
from .config import ServerConfig
from .dataindex import DataIndex
from .runs import RunsManager

SEED_BLUEPRINT = {
    "id": "main",
    "flow": {
        "kind": "step",
        "ref": "identity",
        "in": {"op": "path", "at": "$"},
        "out": {"op": "path", "at": "$.result"},
    },
    "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
}
"""The Blueprint a fresh server holds: one step echoing its input (upstream's seed)."""

COMPILED_KEPT = 256
"""Compiled Blueprints kept for reuse (the oldest is dropped first)."""


@dataclass(slots=True)
class ServerState:
    config: ServerConfig
    store: Store
    engine: Engine
    runs: RunsManager
    base_url: str = ""
    started_at: float = field(default_factory=time.time)
    operators: OperatorHub | None = None
    extra_routes: list[BaseRoute] = field(default_factory=list)
    """Routes added by other modules at build time (before `create_app`)."""
    auth_exempt: list[str] = field(default_factory=lambda: list(OWN_CREDENTIAL_PREFIXES))
    """Path prefixes of mutating routes that check their own credentials instead of the admin token."""
    worker_handles: HandleMemory = field(default_factory=HandleMemory)
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    """Failed dashboard sign-ins per client address."""
    data_index: DataIndex = field(default_factory=DataIndex)
    fn_registries: dict[Path, dict[str, Callable[..., Any]]] = field(default_factory=dict)
    compiled: dict[tuple[str, Path], CompiledBlueprint] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once shutdown began: long waits (SSE streams, sync launches) end."""

    @classmethod
    async def open(cls, config: ServerConfig, *, base_url: str = "") -> ServerState:
        """Open the store (marking runs whose owner is gone `interrupted`) and build the engine."""
        store = await open_store(config.store, durability=config.durability)
        try:
            secret = await store.token_secret()
            engine = Engine(
                EngineConfig(
                    token_secret=secret,
                    worker_token_ttl_secs=config.worker_token_ttl_secs,
                    max_attempt_output_bytes=config.max_attempt_output_bytes,
                    http_base_url=base_url or None,
                )
            )
            hub = OperatorHub(
                engine,
                store,
                base_url=base_url or None,
                config=OperatorHubConfig(
                    ping_secs=config.operator_ping_secs,
                    dead_after_secs=config.operator_dead_after_secs,
                    sweep_secs=config.operator_session_sweep_secs,
                    max_sessions=config.max_operator_sessions,
                ),
            )
            runs = RunsManager(
                engine,
                store,
                durability=config.durability,
                sse_buffer=config.sse_buffer,
                sse_buffer_bytes=config.sse_buffer_bytes,
                services=RuntimeServices(operators=hub, adaptive_inline=False),
            )
            state = cls(config, store, engine, runs, base_url, operators=hub)
            await state._seed()
        except BaseException:
            await store.close()
            raise
        return state

    @property
    def base_dir(self) -> Path:
        """Where references and relative imports of the server's Blueprints resolve."""
        return Path(self.config.base_dir or ".").resolve()

    def compile(self, raw: Any, *, base_dir: Path | None = None) -> CompiledBlueprint:
        """Compile a Blueprint with the server's function registry; bad input raises DiagnosticError.

        A Blueprint that references no file compiles to the same thing every time, so the result is
        kept (by content hash and folder) and shared by its runs; one that reads files is compiled
        afresh at each launch, so an edited prompt file is picked up.
        """
        where = base_dir or self.base_dir
        key = (blueprint_hash(raw), where)
        found = self.compiled.get(key)
        if found is not None:
            return found
        compiled = compile_blueprint(raw, base_dir=where, fns=self.functions(where), services=self.runs.services)
        if compiled.raw == raw:
            if len(self.compiled) >= COMPILED_KEPT:
                self.compiled.pop(next(iter(self.compiled)))
            self.compiled[key] = compiled
        return compiled

    def functions(self, base_dir: Path) -> dict[str, Callable[..., Any]]:
        """The function registry for Blueprints resolving from `base_dir`, built once per folder: scanning
        the installed entry points costs far more than a whole small run."""
        found = self.fn_registries.get(base_dir)
        if found is None:
            found = self.fn_registries[base_dir] = fn_registry(self.config.fns, base_dir)
        return found

    @property
    def uptime(self) -> float:
        return time.time() - self.started_at

    def set_base_url(self, base_url: str) -> None:
        """The URL clients and child workers reach this server at (known once the socket is bound)."""
        self.base_url = base_url
        self.engine.config.http_base_url = base_url
        if self.operators is not None:
            self.operators.base_url = base_url

    async def _seed(self) -> None:
        name = self.config.seed_blueprint_id
        if not await self.store.blueprint_history(name):
            await self.store.put_blueprint(name, {**SEED_BLUEPRINT, "id": name})

    async def start(self) -> None:
        await self.runs.start()
        if self.operators is not None:
            await self.operators.start()

    def begin_shutdown(self) -> None:
        """Refuse new launches and interrupt the live runs (called as soon as a stop is requested)."""
        self.stopping.set()
        self.runs.interrupt_all()

    async def close(self) -> None:
        """Interrupt live runs (children killed), close operator sessions, flush and close the store."""
        await self.runs.shutdown()
        if self.operators is not None:
            await self.operators.aclose()
        await self.store.close()


__all__ = ["SEED_BLUEPRINT", "OperatorHub", "ServerState"]
