"""`ConcurrencyLayer`: at most N workers of an agent (or of all agents, `*`) running at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .around import AroundLayer
from .config import WILDCARD
from .join import after_join

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


@dataclass(slots=True)
class _Pool:
    scope: str
    limit: int
    slots: asyncio.Semaphore
    held: int = 0


class ConcurrencyLayer(AroundLayer):
    """Holds a slot from before the inner spawn until the worker has finished (its join returned).

    A spawn takes its agent's slot first, then the shared `*` slot, always in that order, so two
    spawns never wait on each other crosswise. A cancel while waiting, or a failed inner spawn,
    gives back whatever was taken.
    """

    name = "concurrency"

    def __init__(self, limits: Mapping[str, int]) -> None:
        self._per_agent = {
            agent: _Pool(agent, n, asyncio.Semaphore(n)) for agent, n in limits.items() if agent != WILDCARD
        }
        shared = limits.get(WILDCARD)
        self._shared = None if shared is None else _Pool(WILDCARD, shared, asyncio.Semaphore(shared))

    def in_use(self, scope: str) -> int:
        """How many slots of `scope` (an agent name or `*`) are held now."""
        pool = self._shared if scope == WILDCARD else self._per_agent.get(scope)
        return 0 if pool is None else pool.held

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        pools = [p for p in (self._per_agent.get(ctx.agent), self._shared) if p is not None]
        if not pools:
            return await inner.spawn(engine, ctx, task_id, attempt, token)
        held: list[_Pool] = []
        try:
            for pool in pools:
                await self._acquire(pool, engine, ctx, task_id, attempt)
                held.append(pool)
            worker = await inner.spawn(engine, ctx, task_id, attempt, token)
        except BaseException:
            _release(held)
            raise

        async def release(err: BaseException | None) -> BaseException | None:
            _release(held)
            return err

        return after_join(worker, release)

    @staticmethod
    async def _acquire(pool: _Pool, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int) -> None:
        if not pool.slots.locked():
            await pool.slots.acquire()
            pool.held += 1
            return
        engine.publish(
            "mw.concurrency_wait", task_id, attempt=attempt, agent=ctx.agent, scope=pool.scope, limit=pool.limit
        )
        started = time.monotonic()
        await pool.slots.acquire()
        pool.held += 1
        waited_ms = round((time.monotonic() - started) * 1000, 3)
        engine.publish(
            "mw.concurrency_acquired", task_id, attempt=attempt, agent=ctx.agent, scope=pool.scope, waited_ms=waited_ms
        )


def _release(held: list[_Pool]) -> None:
    while held:
        pool = held.pop()
        pool.held -= 1
        pool.slots.release()


__all__ = ["ConcurrencyLayer"]
