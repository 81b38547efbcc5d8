"""The runs this server hosts: launched, watched, cancelled, resumed and re-run as owned tasks.

Every run is a task of the server's loop sharing the one engine; a run's failure, a client leaving
or a slow SSE subscriber affects no other run. The row is created (and committed) before a launch
returns, so a detached launch's id can be read back at once. Shutdown marks the runs still going
`interrupted` (their workers are cancelled for real, children killed) so they can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..blueprint.compiler import CompiledBlueprint
from ..core.engine import Engine
from ..core.events import EventStream
from ..ids import RunId, StepId, TaskId
from ..operator.layers import operator_layers
from ..run.launch import RunControl, RunResult, Workspace, run_blueprint
from ..run.plan import compile_launch
from ..services import RuntimeServices
from ..store import (
    Durability,
    LaunchSnapshot,
    ReplayHit,
    ReplayRow,
    ResumePlan,
    RunJournal,
    RunStatus,
    StepEntry,
    Store,
    cancel_run,
    create_run,
    durable_run,
)
from .feed import RunFeed

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"
TIMEOUT_REASONS = ("ttl", "timeout")


@dataclass(slots=True)
class LiveRun:
    """A run this server is driving right now."""

    run_id: RunId
    task_id: TaskId
    control: RunControl
    feed: RunFeed
    done: asyncio.Future[RunResult]
    replayed_steps: int = 0
    task: asyncio.Task[None] | None = None
    steps: dict[StepId, str] = field(default_factory=dict)
    """Engine step id → step ref of every step dispatched so far."""
    timeout_secs: float | None = None
    compiled: CompiledBlueprint | None = None
    workspace: Workspace | None = None


class _Observer:
    """Step events of one run into its feed (and its step ids into the manager's map)."""

    def __init__(self, manager: RunsManager, live: LiveRun) -> None:
        self.manager = manager
        self.live = live

    def step_started(self, step_ref: str, step_id: StepId | None) -> None:
        if step_id is not None:
            self.live.steps[step_id] = step_ref
            self.manager.steps[step_id] = self.live
        self.live.feed.publish("step.started", step_ref, None, {"step_id": step_id})

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        self.manager.forward_outputs()
        data: dict[str, Any] = {"step_id": step_id, "status": status, "elapsed_ms": round(elapsed * 1000, 3)}
        data["error" if status in ("failed", "cancelled", "timeout") else "value"] = detail
        self.live.feed.publish("step.finished", step_ref, None, data)


class _FeedJournal:
    """The dispatcher's journal with its trace events going through the run's feed."""

    def __init__(self, inner: RunJournal, feed: RunFeed) -> None:
        self.inner = inner
        self.feed = feed

    def lookup(self, step_ref: str, input_hash: str) -> ReplayHit | None:
        return self.inner.lookup(step_ref, input_hash)

    async def record_step(self, entry: StepEntry, replay: ReplayRow | None) -> None:
        await self.inner.record_step(entry, replay)
        if self.feed.subscriber_count:
            # In-process steps can finish one after another without the run ever suspending; one
            # turn of the loop per step lets the SSE streams send each step's events as it ends
            # rather than all at once when the run next waits.
            await asyncio.sleep(0)

    def trace(self, kind: str, step_ref: str | None = None, attempt: int | None = None, payload: Any = None) -> None:
        self.feed.publish(kind, step_ref, attempt, payload)


def stored_result(result: RunResult) -> Any:
    """What the run record keeps: the final ctx, or the error with the partial ctx."""
    if result.status == "done":
        return result.final_ctx
    return {"error": result.error, "partial_ctx": result.partial_ctx}


class RunsManager:
    """Launch, cancel, resume and re-run runs as tasks of this process; fan their events out."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        durability: str = "batch",
        sse_buffer: int = 1024,
        services: RuntimeServices | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.services = services or RuntimeServices()
        """What resumed and re-run launches are compiled with; its operator hub answers `main_ai` hints."""
        self.durability = Durability(durability)
        self.sse_buffer = sse_buffer
        self.live: dict[RunId, LiveRun] = {}
        self.steps: dict[StepId, LiveRun] = {}
        self._outputs: EventStream | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self.closing = False

    # ── lifetime ──────────────────────────────────────────────────────────

    async def start(self) -> None:
        self._outputs = self.engine.events(("worker_output",))
        self._forwarder = asyncio.create_task(self._forward_loop(), name="run output forwarder")

    def interrupt_all(self) -> None:
        """Refuse new launches; cancel every live run's workers so it ends `interrupted` (resumable)."""
        self.closing = True
        for live in list(self.live.values()):
            live.control.cancel(SHUTDOWN_REASON)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Interrupt every live run (workers cancelled, children killed) and wait for their rows."""
        self.interrupt_all()
        tasks = [live.task for live in self.live.values() if live.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        if self._forwarder is not None:
            self._forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forwarder
        if self._outputs is not None:
            self._outputs.close()

    @property
    def running_count(self) -> int:
        return len(self.live)

    # ── launching ─────────────────────────────────────────────────────────

    async def launch(
        self,
        compiled: CompiledBlueprint,
        init_ctx: Any,
        launch: LaunchSnapshot,
        *,
        workspace: Workspace | None = None,
        task_id: TaskId | None = None,
        goal: str = "",
        blueprint_ref: Any = None,
        timeout_secs: float | None = None,
        run_id: RunId | None = None,
    ) -> LiveRun:
        """Create the run (committed; under `run_id` when given) and start driving it; returns at once."""
        run = await create_run(
            self.store, launch, task_id=task_id, goal=goal, blueprint_ref=blueprint_ref, run_id=run_id
        )
        plan = ResumePlan(run, launch, [], RunStatus.PENDING)
        return await self._start(compiled, init_ctx, plan, workspace, timeout_secs)

    async def relaunch(self, plan: ResumePlan, *, timeout_secs: float | None = None) -> LiveRun:
        """Drive a resumed or re-run run (already taken back to `running`) from its launch snapshot.

        If its Blueprint no longer compiles, the run is put back in its previous status.
        """
        try:
            compiled, workspace = compile_launch(plan.launch, services=self.services)
        except BaseException:
            await self.store.try_transition(plan.run.run_id, RunStatus.RUNNING, plan.previous_status)
            raise
        return await self._start(compiled, plan.launch.init, plan, workspace, timeout_secs)

    async def _start(
        self,
        compiled: CompiledBlueprint,
        init_ctx: Any,
        plan: ResumePlan,
        workspace: Workspace | None,
        timeout_secs: float | None,
    ) -> LiveRun:
        run_id = plan.run.run_id
        loop = asyncio.get_running_loop()
        live = LiveRun(
            run_id,
            plan.run.task_id,
            RunControl(run_id),
            RunFeed(self.store, run_id, self.sse_buffer),
            loop.create_future(),
            len(plan.replay),
            timeout_secs=timeout_secs,
            compiled=compiled,
            workspace=workspace,
        )
        self.live[run_id] = live
        if plan.previous_status is not RunStatus.PENDING:
            await live.feed.skip_history()
        live.task = asyncio.create_task(self._drive(live, compiled, init_ctx, plan, workspace), name=f"run {run_id}")
        return live

    async def _drive(
        self,
        live: LiveRun,
        compiled: CompiledBlueprint,
        init_ctx: Any,
        plan: ResumePlan,
        workspace: Workspace | None,
    ) -> None:
        control = live.control
        loop = asyncio.get_running_loop()
        timer = loop.call_later(live.timeout_secs, control.cancel, "ttl") if live.timeout_secs else None
        hub = self.services.operators
        registry = operator_layers(hub) if hub is not None else None
        try:
            async with durable_run(
                self.store,
                plan=plan,
                durability=self.durability,
                on_cancel=lambda: control.cancel("cancelled"),
            ) as journal:
                result = await run_blueprint(
                    compiled,
                    init_ctx,
                    engine=self.engine,
                    control=control,
                    journal=_FeedJournal(journal, live.feed),
                    observer=_Observer(self, live),
                    workspace=workspace,
                    registry=registry,
                )
                self.forward_outputs()
                status = RunStatus(result.status)
                if result.status == "cancelled" and control.reason in TIMEOUT_REASONS:
                    status = RunStatus.FAILED
                    result.status = "failed"
                    limit = f"{live.timeout_secs}s" if live.timeout_secs else "its limit"
                    result.error = {"message": f"run exceeded {limit}", "failed_step": None, "verdict_value": None}
                elif result.status == "cancelled" and control.reason == SHUTDOWN_REASON:
                    status = RunStatus.INTERRUPTED
                await journal.finish(status, stored_result(result))
            await live.feed.catch_up()
            if not live.done.done():
                live.done.set_result(result)
        except BaseException as exc:
            log.exception("run %s ended with an internal error", live.run_id)
            with contextlib.suppress(Exception):
                await live.feed.catch_up()
            if not live.done.done():
                live.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if timer is not None:
                timer.cancel()
            live.feed.end()
            for step_id in live.steps:
                self.steps.pop(step_id, None)
            self.live.pop(live.run_id, None)

    # ── control ───────────────────────────────────────────────────────────

    async def cancel(self, run_id: RunId, reason: str = "cancelled over HTTP") -> bool:
        """Mark the run cancelled and, when it runs here, cancel it for real (workers, children)."""
        changed = await cancel_run(self.store, run_id)
        live = self.live.get(run_id)
        if live is not None:
            await live.feed.catch_up()
            live.control.cancel(reason)
        return changed

    # ── output events ─────────────────────────────────────────────────────

    def forward_outputs(self) -> None:
        """Move the engine's buffered worker output events into their runs' feeds, in order."""
        stream = self._outputs
        if stream is None:
            return
        while (event := stream.get_nowait()) is not None:
            self._route(event.step_id, event.data)

    async def _forward_loop(self) -> None:
        stream = self._outputs
        assert stream is not None
        async for event in stream:
            self._route(event.step_id, event.data)
            self.forward_outputs()

    def _route(self, step_id: StepId | None, data: Mapping[str, Any]) -> None:
        live = self.steps.get(step_id) if step_id is not None else None
        if live is None or step_id is None:
            return
        body = data.get("event") or {}
        kind = body.get("type", "output") if isinstance(body, Mapping) else "output"
        live.feed.publish(
            f"output.{kind}", live.steps.get(step_id), data.get("attempt"), {"step_id": step_id, "event": body}
        )


__all__ = ["LiveRun", "RunsManager", "compile_launch", "stored_result"]
