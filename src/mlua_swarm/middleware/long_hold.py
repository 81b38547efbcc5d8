"""`LongHoldLayer`: warns (event `mw.long_hold_warn`) when a worker ran longer than a threshold."""

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


class LongHoldLayer(AroundLayer):
    """Measures from spawn return to join end; the outcome is never touched.

    Upstream reused `task_attempt_completed` as the carrier, which observers could mistake for a
    real completion; here the warning is its own event kind.
    """

    name = "long_hold"

    def __init__(self, hold_ms: float) -> None:
        if hold_ms < 0:
            raise ValueError("long_hold_warn_ms must not be negative")
        self.hold_ms = hold_ms

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)
        spawned = time.monotonic()

        async def check(err: BaseException | None) -> BaseException | None:
            elapsed_ms = (time.monotonic() - spawned) * 1000
            if elapsed_ms > self.hold_ms:
                engine.publish(
                    "mw.long_hold_warn",
                    task_id,
                    attempt=attempt,
                    agent=ctx.agent,
                    elapsed_ms=round(elapsed_ms, 3),
                    default_hold_ms=self.hold_ms,
                )
            return err

        return after_join(worker, check)


__all__ = ["LongHoldLayer"]
