"""`SeniorEscalationLayer` (hint `senior_escalation`): a worker's `ok=false` goes to the senior bridge."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..worker.output import Final, Inline
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

ESCALATION_REASON = "worker reported ok=false"


class SeniorEscalationLayer(AroundLayer):
    """After a clean join whose last Final has `ok=false`, ask `ctx.operator.senior_bridge`.

    An answer lands as an override `Final({"original", "senior_answer"}, ok=true)` submitted with
    the worker's own token; the original Final stays on the tail. No retry happens. A worker error
    passes through, and a failed ask or a refused override leaves the outcome as it was.
    """

    name = "senior_escalation"

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        bridge = ctx.operator.senior_bridge
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)
        if bridge is None:
            return worker

        async def escalate(err: BaseException | None) -> BaseException | None:
            if err is not None:
                return err
            final = last_final(engine.output_tail(task_id, attempt))
            if final is None or final.ok:
                return None
            original = final.content.as_value()
            try:
                answer = await bridge.ask(task_id, {"reason": ESCALATION_REASON, "value": original})
                override = Final(Inline({"original": original, "senior_answer": answer}), True)
                await engine.submit_output(token, task_id, attempt, override)
            except Exception as exc:
                log.warning("senior escalation for step %s attempt %s failed: %s", task_id, attempt, exc)
                engine.publish("mw.escalation_failed", task_id, attempt=attempt, agent=ctx.agent, error=str(exc))
                return None
            engine.publish("mw.escalated", task_id, attempt=attempt, agent=ctx.agent)
            return None

        return after_join(worker, escalate)


__all__ = ["ESCALATION_REASON", "SeniorEscalationLayer"]
