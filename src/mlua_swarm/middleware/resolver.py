"""`ResolverLayer`: lets a host pick the agent that actually serves a step, per spawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .around import AroundLayer

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


class AgentResolver(Protocol):
    """Maps the step's agent name (the hint) to the agent to spawn."""

    async def resolve(self, hint: str, ctx: Ctx) -> str: ...


class ResolverLayer(AroundLayer):
    """When the resolver names another agent, the inner spawner sees a cloned ctx with that agent."""

    name = "resolver"

    def __init__(self, resolver: AgentResolver) -> None:
        self.resolver = resolver

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        resolved = await self.resolver.resolve(ctx.agent, ctx)
        if resolved != ctx.agent:
            ctx = ctx.clone(agent=resolved)
        return await inner.spawn(engine, ctx, task_id, attempt, token)


__all__ = ["AgentResolver", "ResolverLayer"]
