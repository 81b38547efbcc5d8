"""`AgentRouter`: the innermost spawner of a linked Blueprint, routing each attempt by agent name."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ..core.ctx import Ctx
from ..ids import StepId
from . import Worker
from .adapter import SpawnerAdapter
from .errors import NotRegistered

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..tokens import CapToken


class AgentRouter(SpawnerAdapter):
    """Maps `ctx.agent` to that agent's spawner; a miss goes to `default` or is `NotRegistered`."""

    def __init__(self, routes: Mapping[str, SpawnerAdapter], default: SpawnerAdapter | None = None) -> None:
        self.routes = dict(routes)
        self.default = default

    def spawn(
        self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Coroutine[Any, Any, Worker]:
        # A plain function handing back the chosen spawner's coroutine (routing needs no coroutine).
        spawner = self.routes.get(ctx.agent, self.default)
        if spawner is None:
            raise NotRegistered(ctx.agent)
        return spawner.spawn(engine, ctx, task_id, attempt, token)


__all__ = ["AgentRouter"]
