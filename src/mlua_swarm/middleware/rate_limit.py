"""`RateLimitLayer`: token buckets per agent (and for all agents, `*`); a spawn waits for its token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .around import AroundLayer
from .config import WILDCARD, RateLimitConfig

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second; takers are served in arrival order."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._turn = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def available(self) -> float:
        """Tokens free right now (fractional while refilling)."""
        self._refill()
        return self._tokens

    async def take(self, on_wait: Callable[[float], None] | None = None) -> None:
        """Wait until a token is free and take it; a cancel while waiting takes nothing.

        `on_wait(seconds)` is called once if the taker has to wait, with the expected wait.
        """
        async with self._turn:
            self._refill()
            if self._tokens < 1 and on_wait is not None:
                on_wait((1 - self._tokens) / self.rate)
            while self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            self._tokens -= 1

    def give_back(self) -> None:
        """Return a token taken for a spawn that did not happen."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + 1)


class RateLimitLayer(AroundLayer):
    """Spaces spawn starts: the agent's bucket first, then the shared `*` bucket.

    Waiting is the whole effect: a rate limit never fails a spawn. A token taken for a spawn that is
    cancelled while waiting on the next bucket is given back.
    """

    name = "rate_limit"

    def __init__(self, limits: Mapping[str, RateLimitConfig]) -> None:
        self._per_agent = {
            agent: TokenBucket(cfg.rate_per_sec, cfg.burst) for agent, cfg in limits.items() if agent != WILDCARD
        }
        shared = limits.get(WILDCARD)
        self._shared = None if shared is None else TokenBucket(shared.rate_per_sec, shared.burst)

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        taken: list[TokenBucket] = []
        scopes = ((ctx.agent, self._per_agent.get(ctx.agent)), (WILDCARD, self._shared))
        try:
            for scope, bucket in scopes:
                if bucket is None:
                    continue

                def waiting(secs: float, scope: str = scope) -> None:
                    engine.publish(
                        "mw.rate_limited",
                        task_id,
                        attempt=attempt,
                        agent=ctx.agent,
                        scope=scope,
                        wait_ms=round(secs * 1000, 3),
                    )

                await bucket.take(waiting)
                taken.append(bucket)
        except BaseException:
            for bucket in taken:
                bucket.give_back()
            raise
        return await inner.spawn(engine, ctx, task_id, attempt, token)


__all__ = ["RateLimitLayer", "TokenBucket"]
