"""`AfterRunAuditLayer`: Blueprint `audits` review finished steps without ever changing their outcome.

After a clean join of a covered step, each audit agent gets a new step whose directive describes
the audited attempt. It is dispatched straight through the raw router (so it cannot recurse into
the stack) and its pass or blocked value lands as the Artifact `audit:<step>` on the audited tail;
such an artifact is never one of the audited worker's parts. Every audit failure is swallowed and
published as `mw.audit_failed`. `sync` audits run inside the join; `async` ones are tasks owned by
an `AuditSupervisor`, which the run drains (or cancels) before it finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ..core.engine import RunContext, TaskSpec
from ..ids import RunId
from ..worker.output import Artifact, Final, Inline
from .around import AroundLayer
from .config import AuditDef
from .join import after_join, last_final

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter

log = logging.getLogger(__name__)

AUDIT_INSTRUCTION = (
    "Review the audited step's final value. Your result is recorded as the artifact 'audit:<step>' on "
    "that step's output; it never changes the step's outcome."
)


class AuditSupervisor:
    """Owns a run's asynchronous audits: `drain()` awaits them all, `aclose()` cancels what is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, job: Coroutine[Any, Any, None]) -> bool:
        """Run `job` as an owned task; after `aclose()` nothing starts (and False is returned)."""
        if self._closed:
            job.close()
            return False
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("after-run audit crashed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait until no audit is outstanding, including audits started while waiting."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        """Cancel outstanding audits, wait for them to end, and refuse new ones."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        while self._tasks:
            await asyncio.wait(set(self._tasks))


class AfterRunAuditLayer(AroundLayer):
    """Runs the `audits` that cover a step once its attempt joined cleanly.

    `token` is an operator token the audits are started and dispatched with; `router` is the raw
    router, below every layer. An agent that is itself an auditor is never audited.
    """

    name = "after_run_audit"

    def __init__(
        self, audits: Sequence[AuditDef], router: SpawnerAdapter, supervisor: AuditSupervisor, token: CapToken
    ) -> None:
        self.audits = tuple(audits)
        self.router = router
        self.supervisor = supervisor
        self.token = token
        self.auditors = frozenset(a.agent for a in self.audits)

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        worker = await inner.spawn(engine, ctx, task_id, attempt, token)
        step = ctx.agent
        covering = [] if step in self.auditors else [a for a in self.audits if a.covers(step)]
        if not covering:
            return worker
        run_id = ctx.meta.runtime.get("run_id")
        run = RunContext(run_id) if isinstance(run_id, RunId) else None

        async def audit(err: BaseException | None) -> BaseException | None:
            if err is not None:
                return err
            final = last_final(engine.output_tail(task_id, attempt))
            for definition in covering:
                job = self._audit(engine, definition, step, task_id, attempt, final, run)
                if definition.mode == "sync":
                    await job
                else:
                    self.supervisor.start(job)
            return None

        return after_join(worker, audit)

    async def _audit(
        self,
        engine: Engine,
        definition: AuditDef,
        step: str,
        task_id: StepId,
        attempt: int,
        final: Final | None,
        run: RunContext | None,
    ) -> None:
        directive = {
            "kind": "after_run_audit",
            "task_id": task_id,
            "step_ref": step,
            "attempt": attempt,
            "ok": final is not None and final.ok,
            "final_value": None if final is None else final.content.as_value(),
            "instruction": AUDIT_INSTRUCTION,
        }
        auditor = definition.agent
        try:
            audit_step = await engine.start_task(self.token, TaskSpec(auditor, directive))
            outcome = await engine.dispatch_attempt(self.token, audit_step, self.router, run=run)
        except Exception as exc:
            log.warning("audit %s of step %s attempt %s failed: %s", auditor, task_id, attempt, exc)
            engine.publish("mw.audit_failed", task_id, attempt=attempt, auditor=auditor, error=str(exc))
            return
        if outcome.kind not in ("pass", "blocked"):
            engine.publish("mw.audit_failed", task_id, attempt=attempt, auditor=auditor, error=outcome.kind)
            return
        engine.annotate_attempt(task_id, attempt, Artifact(f"audit:{step}", Inline(outcome.value)))
        engine.publish(
            "mw.audit_landed", task_id, attempt=attempt, auditor=auditor, audit_step=audit_step, outcome=outcome.kind
        )


__all__ = ["AUDIT_INSTRUCTION", "AfterRunAuditLayer", "AuditSupervisor"]
