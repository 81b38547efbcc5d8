"""Agent kinds: how a Blueprint agent definition becomes a spawner.

Each kind (`rust_fn`, `python`, `lua`, `subprocess`, ...) implements `AgentKind.build`, which both
validates the agent's `spec` (raising `InvalidAgentSpec` with a hint) and returns its spawner. The
compiler calls `build` for every agent, so a bad spec fails at compile time, before anything runs.
Kinds are looked up lazily so a Blueprint that uses no Lua never imports lupa.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import EngineConfig
from .adapter import SpawnerAdapter
from .errors import SpawnInternalError

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..services import RuntimeServices
    from ..tokens import CapToken
    from . import Worker


class InvalidAgentSpec(ValueError):
    """An agent's `spec` cannot be built; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None, code: str = "invalid-agent-spec") -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


@dataclass(slots=True)
class LinkEnv:
    """What kinds may consult while building: the Blueprint's folder and JSON, function ids, config."""

    base_dir: Path = field(default_factory=Path.cwd)
    blueprint: Mapping[str, Any] = field(default_factory=dict)
    fns: dict[str, Callable[..., Any]] = field(default_factory=dict)
    config: EngineConfig = field(default_factory=EngineConfig)
    services: RuntimeServices | None = None
    """What the hosting process offers (the server's operator hub); None for a plain `mse run`."""
    runners: dict[str, Any] = field(default_factory=dict)
    """Agent name → the Runner it resolved to (inline, `runner_ref`, legacy binding, `default_runner`)."""


class AgentKind(ABC):
    name: str

    @abstractmethod
    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        """Validate `agent` (the AgentDef as JSON) and return the spawner for it."""

    def unavailable_reason(self) -> str | None:
        """Why this installation cannot run the kind (a missing optional dependency), or None."""
        return None


# kind name -> "module:attribute" of its AgentKind class, imported on first use. `None` marks a
# kind upstream defines that this installation cannot run yet: lint and build accept its agents,
# and a run refuses it before anything starts. To make such a kind runnable, put its class here
# (or call `register_kind` at import time from a module listed here).
_BUILTIN: dict[str, str | None] = {
    "rust_fn": "mlua_swarm.worker.pyfn:RustFnKind",
    "python": "mlua_swarm.worker.pyfn:PythonKind",
    "lua": "mlua_swarm.worker.lua:LuaKind",
    "subprocess": "mlua_swarm.worker.process:SubprocessKind",
    "operator": "mlua_swarm.operator.spawner:OperatorAgentKind",
    "agent_block": "mlua_swarm.worker.agent_block:AgentBlockKind",
    "ray": "mlua_swarm.worker.ray:RayKind",
}
_LOADED: dict[str, AgentKind] = {}


class UnavailableKind(AgentKind):
    """A kind upstream defines that cannot run here yet: its agents compile and lint, a run refuses them.

    `build` checks only what every implementation of the kind requires (`required` spec keys) and
    returns a spawner that refuses to start, in case a caller skips the pre-run check.
    """

    def __init__(self, name: str, required: tuple[str, ...] = ()) -> None:
        self.name = name
        self.required = required

    def unavailable_reason(self) -> str:
        return f"agent kind '{self.name}' is not available in this installation yet"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        spec = agent.get("spec") or None  # a Lua `{}` arrives as [], which upstream reads as no keys
        if spec is not None and not isinstance(spec, Mapping):
            raise InvalidAgentSpec(f"agent '{agent['name']}' of kind {self.name}: spec must be an object")
        for key in self.required:
            value = (spec or {}).get(key)
            if not isinstance(value, str) or not value:
                raise InvalidAgentSpec(
                    f"agent '{agent['name']}' of kind {self.name} needs spec.{key}", f"add spec.{key}"
                )
        return _Refusing(self.unavailable_reason())


class _Refusing(SpawnerAdapter):
    def __init__(self, message: str) -> None:
        self.message = message

    @property
    def unavailable_reason(self) -> str | None:
        return self.message

    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        raise SpawnInternalError(self.message)


_PENDING: dict[str, AgentKind] = {
    "operator": UnavailableKind("operator", required=("operator_ref",)),
}


def unavailable_message(kind: str) -> str:
    """Why agents of kind `kind` cannot run here (what to install, when a dependency is missing)."""
    found = agent_kind(kind)
    reason = found.unavailable_reason() if found is not None else None
    return reason or f"agent kind '{kind}' is not available in this installation yet"


def register_kind(kind: AgentKind) -> None:
    """Add (or replace) a kind; extensions call this at import time."""
    _LOADED[kind.name] = kind


def agent_kind(name: str) -> AgentKind | None:
    """The kind named `name`: runnable, `UnavailableKind` for a known kind that cannot run here, or None."""
    kind = _LOADED.get(name)
    if kind is None and name in _BUILTIN:
        target = _BUILTIN[name]
        if target is None:
            return _PENDING.get(name)
        module, attr = target.split(":")
        kind = getattr(importlib.import_module(module), attr)()
        _LOADED[name] = kind
    return kind


def is_runnable(name: str) -> bool:
    """Whether agents of kind `name` can run in this installation."""
    kind = agent_kind(name)
    return kind is not None and kind.unavailable_reason() is None


def known_kinds() -> list[str]:
    """Every kind name this installation knows, runnable or not."""
    return sorted(set(_BUILTIN) | set(_LOADED))


def runnable_kinds() -> list[str]:
    return [name for name in known_kinds() if is_runnable(name)]


__all__ = [
    "AgentKind",
    "InvalidAgentSpec",
    "LinkEnv",
    "UnavailableKind",
    "agent_kind",
    "is_runnable",
    "known_kinds",
    "register_kind",
    "runnable_kinds",
    "unavailable_message",
]
