"""`AgentContextLayer`: merges the ctx tiers into the runtime and builds the worker's context view.

Tiers, strongest first: Run > Task > Step > Agent > Blueprint-global. The run and task tiers are
already in `ctx.meta.runtime` when this layer runs, so lower tiers are only inserted where a key is
absent. The view is filtered by the agent's `ContextPolicy` (else the Blueprint default) and stored
as an `AgentContextView` at `runtime["agent_context"]` (serialise it with `.to_json()`), the policy
as JSON at `runtime["context_policy"]` (the server filters `context.steps` with it when a worker
fetches its payload).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..core.ctx import AgentContextView
from ..diagnostics import Diagnostic, Level, Location
from .around import AroundLayer, _Around
from .config import ContextPolicy, parse_section

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter

NAMED_FIELDS = ("project_root", "work_dir", "task_metadata", "run_id", "project_name_alias")


class AgentContextLayer(AroundLayer):
    """Always present in a linked stack; the innermost of the launch layers."""

    name = "agent_context"

    def __init__(
        self,
        global_ctx: Mapping[str, Any] | None = None,
        agent_ctx: Mapping[str, Mapping[str, Any]] | None = None,
        default_policy: ContextPolicy | None = None,
        agent_policy: Mapping[str, ContextPolicy] | None = None,
        projection_placement: Any = None,
    ) -> None:
        self.global_ctx = dict(global_ctx or {})
        self.agent_ctx = {name: dict(tier) for name, tier in (agent_ctx or {}).items()}
        self.default_policy = default_policy
        self.agent_policy = dict(agent_policy or {})
        self.projection_placement = projection_placement
        self._merged: dict[str, dict[str, Any]] = {}
        self._plain: dict[str, bool] = {}

    def merged_tiers(self, agent: str) -> dict[str, Any]:
        """The Blueprint-global tier with the agent's tier over it."""
        merged = self._merged.get(agent)
        if merged is None:
            merged = self._merged[agent] = {**self.global_ctx, **self.agent_ctx.get(agent, {})}
        return merged

    def policy_for(self, agent: str) -> ContextPolicy | None:
        return self.agent_policy.get(agent, self.default_policy)

    def passes_through(self, agent: str) -> bool:
        """No policy filters this agent's view and no projection placement is declared."""
        return self.policy_for(agent) is None and self.projection_placement is None

    def plain(self, agent: str) -> bool:
        """No tier to merge, no policy to apply and no placement for `agent` (decided once per agent)."""
        plain = self._plain.get(agent)
        if plain is None:
            plain = self._plain[agent] = not self.merged_tiers(agent) and self.passes_through(agent)
        return plain

    def wrap(self, inner: SpawnerAdapter) -> SpawnerAdapter:
        return _ContextSpawner(self, inner)

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        step_tier = ctx.meta.runtime.get("step_ctx")
        ctx = ctx.clone()
        runtime = ctx.meta.runtime
        tier_keys: list[str] = []
        for tier in (step_tier if isinstance(step_tier, dict) else {}, self.merged_tiers(ctx.agent)):
            for key, value in tier.items():
                runtime.setdefault(key, value)
                tier_keys.append(key)
        policy = self.policy_for(ctx.agent)
        view = build_view(ctx, tier_keys, policy)
        runtime["agent_context"] = view
        if policy is not None:
            runtime["context_policy"] = policy.model_dump()
        if self.projection_placement is not None:
            runtime["__projection_placement"] = self.projection_placement
        return await inner.spawn(engine, ctx, task_id, attempt, token)


class _ContextSpawner(_Around):
    """The layer over `inner`. For an attempt with nothing to merge or filter (no step tier, a plain
    agent) the engine's fresh per-attempt ctx only gains the view, and the spawn is `inner`'s own
    coroutine; otherwise it is the layer's `around`."""

    __slots__ = ()
    layer: AgentContextLayer

    def spawn(
        self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Coroutine[Any, Any, Worker]:
        runtime = ctx.meta.runtime
        if not runtime.get("step_ctx") and self.layer.plain(ctx.agent):
            runtime["agent_context"] = AgentContextView.of_runtime(ctx)
            return self.inner.spawn(engine, ctx, task_id, attempt, token)
        return self.layer.around(self.inner, engine, ctx, task_id, attempt, token)


def build_view(ctx: Ctx, tier_keys: list[str], policy: ContextPolicy | None) -> AgentContextView:
    """The view of `ctx`: named fields from the runtime, other tier keys as `extra`, then the policy."""
    runtime = ctx.meta.runtime
    admits = policy.admits if policy is not None else _admit_all
    get = runtime.get
    return AgentContextView(
        ctx.task_id,
        ctx.agent,
        ctx.attempt,
        project_root=get("project_root") if admits("project_root") else None,
        work_dir=get("work_dir") if admits("work_dir") else None,
        task_metadata=get("task_metadata") if admits("task_metadata") else None,
        run_id=get("run_id") if admits("run_id") else None,
        project_name_alias=get("project_name_alias") if admits("project_name_alias") else None,
        extra={key: runtime[key] for key in tier_keys if key not in NAMED_FIELDS and admits(key)},
    )


def _admit_all(_key: str) -> bool:
    return True


def agent_context_from_blueprint(blueprint: Mapping[str, Any]) -> tuple[AgentContextLayer, list[Diagnostic]]:
    """Read `default_agent_ctx`, `metas`, each agent's `meta.ctx` / `meta.context_policy`, and the
    default policy and projection placement; a ctx tier that is not an object is skipped with a warning."""
    diagnostics: list[Diagnostic] = []
    global_ctx = _object_tier(blueprint.get("default_agent_ctx"), "$.default_agent_ctx", None, diagnostics)
    metas = {m.get("name"): m.get("ctx") for m in blueprint.get("metas") or () if isinstance(m, Mapping)}
    agent_ctx: dict[str, dict[str, Any]] = {}
    agent_policy: dict[str, ContextPolicy] = {}
    for index, agent in enumerate(blueprint.get("agents") or ()):
        if not isinstance(agent, Mapping) or not isinstance(agent.get("name"), str):
            continue
        name: str = agent["name"]
        meta = agent.get("meta")
        if not isinstance(meta, Mapping):
            continue
        path = f"$.agents[{index}].meta"
        shared = _object_tier(metas.get(meta.get("meta_ref")), f"{path}.meta_ref", name, diagnostics)
        own = _object_tier(meta.get("ctx"), f"{path}.ctx", name, diagnostics)
        if shared or own:
            agent_ctx[name] = {**(shared or {}), **(own or {})}
        if meta.get("context_policy") is not None:
            policy_path = f"{path}.context_policy"
            agent_policy[name] = parse_section(
                ContextPolicy, meta["context_policy"], policy_path, "invalid-context-policy"
            )
    default_policy = None
    if blueprint.get("default_context_policy") is not None:
        default_policy = parse_section(
            ContextPolicy, blueprint["default_context_policy"], "$.default_context_policy", "invalid-context-policy"
        )
    layer = AgentContextLayer(
        global_ctx, agent_ctx, default_policy, agent_policy, blueprint.get("projection_placement")
    )
    return layer, diagnostics


def _object_tier(value: Any, json_path: str, agent: str | None, diagnostics: list[Diagnostic]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    diagnostics.append(
        Diagnostic(
            "agent-ctx-not-object",
            f"context tier is a {type(value).__name__}, not an object; it is ignored",
            Level.WARN,
            Location(element="agent" if agent else "root", name=agent, json_path=json_path),
            hint="write the ctx tier as a JSON object of key/value pairs",
            stage="link",
        )
    )
    return None


__all__ = ["NAMED_FIELDS", "AgentContextLayer", "agent_context_from_blueprint", "build_view"]
