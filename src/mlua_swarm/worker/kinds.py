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
from typing import Any, ClassVar

from ..core.config import EngineConfig
from .adapter import SpawnerAdapter


class InvalidAgentSpec(ValueError):
    """An agent's `spec` cannot be built; `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(slots=True)
class LinkEnv:
    """What kinds may consult while building: the Blueprint's folder and JSON, function ids, config."""

    base_dir: Path = field(default_factory=Path.cwd)
    blueprint: Mapping[str, Any] = field(default_factory=dict)
    fns: dict[str, Callable[..., Any]] = field(default_factory=dict)
    config: EngineConfig = field(default_factory=EngineConfig)


class AgentKind(ABC):
    name: ClassVar[str]

    @abstractmethod
    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        """Validate `agent` (the AgentDef as JSON) and return the spawner for it."""


# kind name -> "module:attribute" of its AgentKind class; imported on first use.
_BUILTIN: dict[str, str] = {
    "rust_fn": "mlua_swarm.worker.pyfn:RustFnKind",
    "python": "mlua_swarm.worker.pyfn:PythonKind",
    "lua": "mlua_swarm.worker.lua:LuaKind",
    "subprocess": "mlua_swarm.worker.process:SubprocessKind",
    "agent_block": "mlua_swarm.worker.agent_block:AgentBlockKind",
}
_LOADED: dict[str, AgentKind] = {}


def register_kind(kind: AgentKind) -> None:
    """Add (or replace) a kind; extensions call this at import time."""
    _LOADED[kind.name] = kind


def agent_kind(name: str) -> AgentKind | None:
    kind = _LOADED.get(name)
    if kind is None and name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        kind = getattr(importlib.import_module(module), attr)()
        _LOADED[name] = kind
    return kind


def known_kinds() -> list[str]:
    return sorted(set(_BUILTIN) | set(_LOADED))


__all__ = ["AgentKind", "InvalidAgentSpec", "LinkEnv", "agent_kind", "known_kinds", "register_kind"]
