"""Python function agents: `rust_fn` (a registered function id) and `python` (an import path).

Function ids come from the built-ins (`identity`), the `mlua_swarm.fns` entry point group, and
`--fn ID=module:attr` on the command line. A `python` agent names `{"callable": "pkg.mod:attr"}`;
the Blueprint's folder is importable.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation, WorkerResult
from .kinds import AgentKind, InvalidAgentSpec, LinkEnv


async def identity(inv: WorkerInvocation) -> WorkerResult:
    """Echo the prompt back (the upstream baseline agent)."""
    return WorkerResult({"by": "baseline-identity", "agent": inv.agent, "echoed": inv.prompt})


BUILTIN_FNS: dict[str, Callable[..., Any]] = {"identity": identity}


def import_callable(target: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """Resolve `module:attr` (attr may be dotted); `base_dir` is put on `sys.path` first."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:attr', got {target!r}")
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target} is not callable")
    return obj  # type: ignore[no-any-return]


def parse_fn_option(option: str) -> tuple[str, str]:
    """`ID=module:attr` from `--fn`."""
    fn_id, sep, target = option.partition("=")
    if not sep or not fn_id or ":" not in target:
        raise ValueError(f"expected ID=module:attr, got {option!r}")
    return fn_id, target


def function_registry(extra: Mapping[str, str] = {}, base_dir: Path | None = None) -> dict[str, Callable[..., Any]]:
    """Built-ins, then entry points, then `--fn` options (later sources replace earlier ones)."""
    fns: dict[str, Callable[..., Any]] = dict(BUILTIN_FNS)
    for ep in entry_points(group="mlua_swarm.fns"):
        fns[ep.name] = ep.load()
    for fn_id, target in extra.items():
        fns[fn_id] = import_callable(target, base_dir)
    return fns


def _spec(agent: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = agent.get("spec")
    if not isinstance(spec, Mapping):
        raise InvalidAgentSpec(f"agent '{agent.get('name')}' needs a spec object", None)
    return spec


def _inline(agent: Mapping[str, Any], env: LinkEnv) -> bool | None:
    """Where a plain `def` function runs, from `spec.inline` (see `InProcSpawner`): true on the event
    loop, false in a worker thread, "auto" adaptive. Unset means adaptive, unless the hosting process
    keeps unset ones in threads (`RuntimeServices.adaptive_inline`: the server does)."""
    spec = agent.get("spec")
    inline = spec.get("inline") if isinstance(spec, Mapping) else None
    if inline is None:
        return None if env.services is None or env.services.adaptive_inline else False
    if inline == "auto":
        return None
    if not isinstance(inline, bool):
        raise InvalidAgentSpec(
            f"agent '{agent.get('name')}': spec.inline must be true, false or \"auto\"",
            "true runs a plain def function on the event loop (only for quick functions that never block), "
            'false always in a worker thread; "auto" (or leaving it out) starts in threads and moves a '
            "function that proves quick onto the loop",
        )
    return inline


class RustFnKind(AgentKind):
    name = "rust_fn"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        spec = agent.get("spec")
        fn_id = spec.get("fn_id") if isinstance(spec, Mapping) else None
        if not isinstance(fn_id, str) or not fn_id:
            raise InvalidAgentSpec(
                f"agent '{agent['name']}' of kind rust_fn needs spec.fn_id",
                'add "spec": {"fn_id": "identity"}',
            )
        fn = env.fns.get(fn_id)
        if fn is None:
            known = ", ".join(sorted(env.fns)) or "none"
            raise InvalidAgentSpec(
                f"function id '{fn_id}' is not registered (known: {known})",
                f"pass --fn {fn_id}=module:attr, or register it in the 'mlua_swarm.fns' entry point group",
            )
        return InProcSpawner().register(str(agent["name"]), fn, inline=_inline(agent, env))


class PythonKind(AgentKind):
    name = "python"

    def build(self, agent: Mapping[str, Any], env: LinkEnv) -> SpawnerAdapter:
        target = _spec(agent).get("callable")
        if not isinstance(target, str):
            raise InvalidAgentSpec(
                f"agent '{agent['name']}' of kind python needs spec.callable",
                'add "spec": {"callable": "package.module:function"}',
            )
        try:
            fn = import_callable(target, env.base_dir)
        except (ImportError, AttributeError, ValueError) as exc:
            raise InvalidAgentSpec(
                f"cannot import {target!r}: {exc}",
                "check the module is importable from the Blueprint's folder and the name after ':' exists",
            ) from exc
        spawner: InProcSpawner[Any] = InProcSpawner().register(str(agent["name"]), fn, inline=_inline(agent, env))
        spawner.worker_kind = "python"
        return spawner


__all__ = ["BUILTIN_FNS", "PythonKind", "RustFnKind", "function_registry", "identity", "import_callable"]
