"""`BudgetLayer`: per-run ceilings on attempts and wall time; crossing one cancels the run."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from ..worker.errors import RejectedByMiddleware
from .around import AroundLayer
from .config import BudgetConfig

if TYPE_CHECKING:
    from ..core.ctx import Ctx
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken
    from ..worker import Worker
    from ..worker.adapter import SpawnerAdapter


class CancellableRun(Protocol):
    """The run a linked stack serves: its id, and a way to cancel the whole run cleanly."""

    @property
    def run_id(self) -> str | None: ...

    def cancel(self, reason: str) -> None:
        """Cancel the run (its steps end cancelled, its workers are stopped); callable more than once."""


class BudgetLayer(AroundLayer):
    """Counts spawns and times the run from its first spawn.

    The spawn beyond `max_attempts`, or the `max_wall_secs` timer, marks the budget spent: it
    publishes `mw.budget_exceeded`, calls `run.cancel(reason)` once, and every later spawn is refused
    with that reason (or, when the run's cancellation has reached the spawning task, ends cancelled).
    `close()` stops the timer (the linked stack calls it).
    """

    name = "budget"

    def __init__(self, budget: BudgetConfig, run: CancellableRun) -> None:
        self.budget = budget
        self.run = run
        self.attempts = 0
        self.spent: str | None = None
        self._started: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def around(
        self, inner: SpawnerAdapter, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken
    ) -> Worker:
        if self.spent is None:
            if self._started is None:
                self._start(engine)
            self.attempts += 1
            limit = self.budget.max_attempts
            if limit is not None and self.attempts > limit:
                self._spend(engine, f"run budget exceeded: more than max_attempts={limit} attempts", task_id)
        if self.spent is not None:
            engine.publish("mw.denied", task_id, attempt=attempt, agent=ctx.agent, reason=self.spent)
            await _take_pending_cancel()
            raise RejectedByMiddleware(self.spent)
        return await inner.spawn(engine, ctx, task_id, attempt, token)

    def _start(self, engine: Engine) -> None:
        self._started = time.monotonic()
        wall = self.budget.max_wall_secs
        if wall is not None:
            reason = f"run budget exceeded: max_wall_secs={wall:g} elapsed"
            self._timer = asyncio.get_running_loop().call_later(wall, self._spend, engine, reason, None)

    def _spend(self, engine: Engine, reason: str, step_id: StepId | None) -> None:
        if self.spent is not None:
            return
        self.spent = reason
        self.close()
        elapsed = 0.0 if self._started is None else time.monotonic() - self._started
        engine.publish(
            "mw.budget_exceeded",
            step_id,
            run_id=self.run.run_id,
            reason=reason,
            attempts=self.attempts,
            elapsed_secs=round(elapsed, 3),
        )
        self.run.cancel(reason)

    def close(self) -> None:
        """Stop the wall-time timer; the counts stay readable."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def _take_pending_cancel() -> None:
    """Let a cancellation already requested for this task (by `run.cancel`) arrive now.

    Cancelling the run reaches the spawning task synchronously when it is part of the run; one
    yield delivers it, so the step and the run end cancelled rather than failed by the refusal.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        await asyncio.sleep(0)


__all__ = ["BudgetLayer", "CancellableRun"]
