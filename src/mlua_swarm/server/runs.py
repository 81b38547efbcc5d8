"""The runs this server hosts: launched, watched, cancelled, resumed and re-run, each a `Run` on its own task.

Every run is the same `Run` object `mse run` and a Python caller use, executed by a task of the
server's loop on the one shared engine; a run's failure, a client leaving or a slow SSE subscriber
affects no other run. The record is created (and committed) before a launch returns, so a detached
launch's id can be read back at once. Shutdown interrupts the runs still going (their workers are
cancelled for real, children killed) so they end `interrupted` and can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from ..blueprint.compiler import CompiledBlueprint
from ..core.engine import Engine
from ..core.events import EventStream
from ..diagnostics import DiagnosticError
from ..ids import RunId, StepId, TaskId
from ..operator.layers import operator_layers
from ..run import Run, RunResult, Workspace
from ..services import RuntimeServices
from ..store import Durability, LaunchSnapshot, Store
from .feed import SUBSCRIBER_BYTES, RunFeed

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "server shutting down"


class LiveRun:
    """A run this server is driving right now: its `Run`, its event feed and the task executing it.

    It is also the run's observer and live feed: step events, trace events and worker output go
    into the feed (recorded in the run's trace, pushed to SSE subscribers).
    """

    def __init__(self, manager: RunsManager, feed: RunFeed) -> None:
        self.manager = manager
        self.feed = feed
        self.done: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.steps: dict[StepId, str] = {}
        """Engine step id → step ref of every step started so far."""
        self.data_bytes = 0
        """What the data-plane records this server kept for the run weigh (their request bodies)."""
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        if self._run is None:
            raise RuntimeError(f"run {self.run_id} has not been created yet")
        return self._run

    @run.setter
    def run(self, run: Run) -> None:
        self._run = run

    @property
    def run_id(self) -> RunId:
        return self.feed.run_id

    @property
    def task_id(self) -> TaskId | None:
        record = self.run.record
        return record.task_id if record is not None else None

    @property
    def replayed_steps(self) -> int:
        return self.run.replayable_steps

    @property
    def compiled(self) -> CompiledBlueprint:
        return self.run.compiled

    @property
    def workspace(self) -> Workspace:
        return self.run.workspace

    # ── RunObserver ───────────────────────────────────────────────────────

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        if step_id is not None:
            self.steps[step_id] = step_ref
            self.manager.steps[step_id] = self
        self.feed.publish("step.started", step_ref, None, {"step_id": step_id, "node_index": node_index})

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        self.manager.forward_outputs()
        data: dict[str, Any] = {"step_id": step_id, "status": status, "elapsed_ms": round(elapsed * 1000, 3)}
        data["error" if status in ("failed", "cancelled", "timeout") else "value"] = detail
        self.feed.publish("step.finished", step_ref, None, data)

    # ── LiveFeed ──────────────────────────────────────────────────────────

    def trace(self, kind: str, step_ref: str | None, attempt: int | None, payload: Any) -> None:
        self.feed.publish(kind, step_ref, attempt, payload)

    async def step_recorded(self) -> None:
        if self.feed.subscriber_count:
            # In-process steps can finish one after another without the run ever suspending; one
            # turn of the loop per step lets the SSE streams send each step's events as it ends
            # rather than all at once when the run next waits.
            await asyncio.sleep(0)

    def flow_ended(self) -> None:
        self.manager.forward_outputs()


class RunsManager:
    """Launch, cancel, resume and re-run runs as tasks of this process; fan their events out."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        durability: str = "batch",
        sse_buffer: int = 1024,
        sse_buffer_bytes: int = SUBSCRIBER_BYTES,
        services: RuntimeServices | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.services = services or RuntimeServices()
        """What resumed and re-run launches are compiled with; its operator hub answers `main_ai` hints."""
        self.durability = Durability(durability)
        self.sse_buffer = sse_buffer
        self.sse_buffer_bytes = sse_buffer_bytes
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
            live.run.interrupt(SHUTDOWN_REASON)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Interrupt every live run (workers cancelled, children killed) and wait for their records."""
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
        """Create the run (committed; under `run_id` when given) and start executing it; returns at once.

        A plan that cannot run here raises `DiagnosticError` and records nothing.
        """
        live = self._watch(run_id or RunId.new())
        run = await Run.create(
            self.store,
            compiled,
            init_ctx,
            launch=launch,
            task_id=task_id,
            goal=goal,
            blueprint_ref=blueprint_ref,
            run_id=live.run_id,
            workspace=workspace,
            **self._options(live, timeout_secs),
        )
        return self._start(live, run)

    async def resume(self, run_id: RunId, *, timeout_secs: float | None = None) -> LiveRun:
        """Take the interrupted run back and execute it, replaying its finished steps (`Run.resume`)."""
        live = self._watch(run_id)
        await self._restore_seats(run_id)
        run = await Run.resume(self.store, run_id, services=self.services, **self._options(live, timeout_secs))
        await live.feed.skip_history()
        return self._start(live, run)

    async def rerun_from(self, run_id: RunId, step: str, *, timeout_secs: float | None = None) -> LiveRun:
        """Execute the finished run again from `step` under the same id (`Run.rerun_from`)."""
        live = self._watch(run_id)
        await self._restore_seats(run_id)
        options = self._options(live, timeout_secs)
        run = await Run.rerun_from(self.store, run_id, step, services=self.services, **options)
        await live.feed.skip_history()
        return self._start(live, run)

    async def _restore_seats(self, run_id: RunId) -> None:
        """A run about to execute again gets its stored operator seats back (forgotten when it ended)."""
        if self.services.operators is not None:
            await self.services.operators.restore(run_id)

    def _watch(self, run_id: RunId) -> LiveRun:
        return LiveRun(self, RunFeed(self.store, run_id, self.sse_buffer, self.sse_buffer_bytes))

    def _options(self, live: LiveRun, timeout_secs: float | None) -> dict[str, Any]:
        """What every server run is built with: the shared engine, the server's durability, its
        operator layers, the run's deadline, and the live run as observer and feed."""
        hub = self.services.operators
        return {
            "engine": self.engine,
            "durability": self.durability,
            "timeout": timeout_secs,
            "registry": operator_layers(hub) if hub is not None else None,
            "observer": live,
            "feed": live,
        }

    def _start(self, live: LiveRun, run: Run) -> LiveRun:
        live.run = run
        self.live[run.run_id] = live
        live.task = asyncio.create_task(self._drive(live), name=f"run {run.run_id}")
        return live

    async def _drive(self, live: LiveRun) -> None:
        run = live.run
        try:
            async with run:
                result = await run.execute()
            await live.feed.catch_up()
            if not live.done.done():
                live.done.set_result(result)
        except BaseException as exc:
            if isinstance(exc, DiagnosticError):
                log.warning("run %s did not start: %s", live.run_id, "; ".join(d.message for d in exc.diagnostics))
            else:
                log.exception("run %s ended with an internal error", live.run_id)
            with contextlib.suppress(Exception):
                await live.feed.catch_up()
            if not live.done.done():
                live.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            live.feed.end()
            for step_id in live.steps:
                self.steps.pop(step_id, None)
            self.live.pop(live.run_id, None)
            if self.services.operators is not None:
                self.services.operators.forget_run(live.run_id)

    # ── control ───────────────────────────────────────────────────────────

    async def cancel(self, run_id: RunId, reason: str = "cancelled over HTTP") -> bool:
        """Mark the run cancelled and, when it runs here, cancel it for real (workers, children)."""
        changed = await Run.request_cancel(self.store, run_id)
        live = self.live.get(run_id)
        if live is not None:
            await live.feed.catch_up()
            live.run.cancel(reason)
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


__all__ = ["SHUTDOWN_REASON", "LiveRun", "RunsManager"]
