"""`MainAILayer` (hint `main_ai`): the operator's spawn hook may refuse a spawn and observes each result."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.ctx import OperatorKind
from ..worker.errors import RejectedByMiddleware
from .around import AroundLayer
from .join import after_join, last_final

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter

log = logging.getLogger(__name__)

HOOKED_KINDS = frozenset({OperatorKind.MAIN_AI, OperatorKind.COMPOSITE})


class MainAILayer(AroundLayer):
    """Active only for main-AI or composite operators that have a spawn hook.

    `hook.before(ctx)` raising refuses the spawn with `RejectedByMiddleware`. `hook.after(ctx, v)`
    gets the last Final's value (None without one) or the worker's error text; its own errors are
    logged and never change the outcome.
    """

    name = "main_ai"

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        hook = ctx.operator.spawn_hook
        if hook is None or ctx.operator.kind not in HOOKED_KINDS:
            return await inner.spawn(engine, ctx, task_id, attempt, token)
        try:
            await hook.before(ctx)
        except Exception as exc:
            engine.publish("mw.hook_rejected", task_id, attempt=attempt, agent=ctx.agent, reason=str(exc))
            raise RejectedByMiddleware(f"main_ai hook refused agent {ctx.agent!r}: {exc}") from exc
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)

        async def observe(err: BaseException | None) -> BaseException | None:
            value: Any
            if err is not None:
                value = str(err)
            else:
                final = last_final(engine.output_tail(task_id, attempt))
                value = None if final is None else final.content.as_value()
            try:
                await hook.after(ctx, value)
            except Exception:
                log.warning("main_ai after-hook failed for step %s attempt %s", task_id, attempt, exc_info=True)
            return err

        return after_join(worker, observe)


__all__ = ["HOOKED_KINDS", "MainAILayer"]
