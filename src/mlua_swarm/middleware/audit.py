"""`AuditLayer`: publishes `attempt_started` before each spawn and `attempt_finished` after each join."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .around import AroundLayer
from .join import after_join

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


class AuditLayer(AroundLayer):
    """Attempt start and end as events, for observers that watch the stack rather than the engine."""

    name = "audit"

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        run_id = ctx.meta.runtime.get("run_id")
        engine.publish("attempt_started", task_id, attempt=attempt, agent=ctx.agent, run_id=run_id)
        started = time.monotonic()
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)

        async def finished(err: BaseException | None) -> BaseException | None:
            engine.publish(
                "attempt_finished",
                task_id,
                attempt=attempt,
                agent=ctx.agent,
                run_id=run_id,
                error=None if err is None else str(err),
                elapsed_ms=round((time.monotonic() - started) * 1000, 3),
            )
            return err

        return after_join(worker, finished)


__all__ = ["AuditLayer"]
