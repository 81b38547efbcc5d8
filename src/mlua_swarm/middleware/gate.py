"""`PolicyGateLayer`: allow and deny lists over agent names and kinds (`kind:<kind>`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..worker.errors import RejectedByMiddleware
from .around import AroundLayer
from .config import KIND_PREFIX

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


class PolicyGateLayer(AroundLayer):
    """Refuses a spawn whose agent matches a deny rule, or (with an allow list) matches no allow rule.

    `kinds` maps agent names to their Blueprint kind; an agent with no known kind matches only by
    name. Decisions are cached per agent name.
    """

    name = "policy_gate"

    def __init__(self, allow: Sequence[str] | None, deny: Sequence[str], kinds: Mapping[str, str]) -> None:
        self.allow = None if allow is None else tuple(allow)
        self.deny = tuple(deny)
        self.kinds = dict(kinds)
        self._decisions: dict[str, str | None] = {}

    def refusal(self, agent: str) -> str | None:
        """Why `agent` may not spawn, or None when it may."""
        if agent not in self._decisions:
            self._decisions[agent] = self._decide(agent)
        return self._decisions[agent]

    def _decide(self, agent: str) -> str | None:
        kind = self.kinds.get(agent)
        labels = (agent,) if kind is None else (agent, KIND_PREFIX + kind)
        for rule in self.deny:
            if rule in labels:
                return f"agent {agent!r} is denied by policy.deny rule {rule!r}"
        if self.allow is not None and not any(rule in labels for rule in self.allow):
            described = agent if kind is None else f"{agent} ({KIND_PREFIX}{kind})"
            return f"agent {described!r} matches no policy.allow rule {list(self.allow)}"
        return None

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        reason = self.refusal(ctx.agent)
        if reason is not None:
            engine.publish("mw.denied", task_id, attempt=attempt, agent=ctx.agent, reason=reason)
            raise RejectedByMiddleware(reason)
        return await inner.spawn(engine, ctx, task_id, attempt, token)


__all__ = ["PolicyGateLayer"]
