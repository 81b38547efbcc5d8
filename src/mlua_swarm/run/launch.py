"""Running a compiled Blueprint: build the spawner stack, evaluate the flow, report the result.

The flow runs in a task owned by `run_blueprint`; `RunControl.cancel` (Ctrl-C, a budget, an API
call) cancels that task, which cancels every running step's worker for real, and the run ends
`cancelled`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..blueprint.compiler import CompiledBlueprint, refuse_unavailable_kinds
from ..core.config import CheckPolicy
from ..core.engine import Engine, RunContext
from ..core.events import Event
from ..core.projection import DEFAULT_DIR_TEMPLATE, Projection
from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..flow import FlowFailed, run_flow
from ..ids import RunId
from ..middleware import LayerRegistry, LinkedSpawner, TaskInput, link
from ..worker.router import AgentRouter
from .dispatcher import AgentPolicy, EngineDispatcher, Journal
from .observer import RunObserver

RunStatus = Literal["done", "failed", "cancelled"]


@dataclass(slots=True)
class RunResult:
    status: RunStatus
    run_id: RunId
    final_ctx: Any = field(default=None, repr=False)
    error: dict[str, Any] | None = None
    partial_ctx: Any = field(default=None, repr=False)
    steps_dispatched: int = 0
    steps_replayed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `mse run --json` document."""
        if self.status == "done":
            return {"status": "done", "run_id": self.run_id, "final_ctx": self.final_ctx}
        return {"status": self.status, "run_id": self.run_id, "error": self.error, "partial_ctx": self.partial_ctx}


@dataclass(slots=True)
class RunControl:
    """Lets anyone holding it cancel the run cleanly (the reason ends up in the result)."""

    run_id: RunId = field(default_factory=RunId.new)
    reason: str | None = None
    _task: asyncio.Task[Any] | None = None

    def cancel(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self._task is not None:
            self._task.cancel()


def initial_ctx(blueprint: Mapping[str, Any], init_ctx: Any) -> Any:
    """`default_init_ctx` shallow-merged under the launch's init ctx (the launch wins)."""
    default = blueprint.get("default_init_ctx")
    if init_ctx is None:
        return dict(default) if isinstance(default, Mapping) else ({} if default is None else default)
    if isinstance(default, Mapping) and isinstance(init_ctx, Mapping):
        return {**default, **init_ctx}
    return init_ctx


@dataclass(frozen=True, slots=True)
class Workspace:
    """The folders a run may write step outputs under (`projection_placement.root` picks one)."""

    work_dir: Path | None = None
    project_root: Path | None = None


def projection_root(compiled: CompiledBlueprint, workspace: Workspace) -> Path | None:
    """Where step outputs are projected, or None; strict check policy without a root is refused."""
    placement = compiled.raw.get("projection_placement") or {}
    if placement.get("root") == "project_root":
        root = workspace.project_root or workspace.work_dir
    else:
        root = workspace.work_dir or workspace.project_root
    if root is None and compiled.raw.get("check_policy") == "strict":
        raise DiagnosticError(
            [
                Diagnostic(
                    "projection-root-missing",
                    "check_policy is strict but no work dir or project root was given for step outputs",
                    location=Location("BlueprintRoot", json_path="$.check_policy"),
                    hint="pass --work-dir DIR, or set check_policy to warn",
                )
            ]
        )
    return root


def agent_policies(compiled: CompiledBlueprint, workspace: Workspace | None = None) -> dict[str, AgentPolicy]:
    default_ctx = compiled.raw.get("default_agent_ctx") or {}
    root = projection_root(compiled, workspace or Workspace())
    template = (compiled.raw.get("projection_placement") or {}).get("dir_template") or DEFAULT_DIR_TEMPLATE
    check = CheckPolicy(compiled.raw.get("check_policy") or "warn")
    policies: dict[str, AgentPolicy] = {}
    for name, agent in compiled.agents.items():
        meta_ctx = ((agent.raw.get("meta") or {}).get("ctx")) or {}
        submit_format = meta_ctx.get("submit_format", default_ctx.get("submit_format"))
        projection = None
        if root is not None:
            step_name = compiled.step_names.canonical_of(name) or name
            projection = Projection(root, step_name, template, check)
        policies[name] = AgentPolicy(agent.timeout_secs, agent.retry, agent.verdict, submit_format, projection)
    return policies


def link_stack(
    compiled: CompiledBlueprint,
    engine: Engine,
    control: RunControl,
    workspace: Workspace | None = None,
    registry: LayerRegistry | None = None,
) -> tuple[LinkedSpawner, list[Diagnostic]]:
    """The agent router wrapped in the middleware the Blueprint asks for."""
    router = AgentRouter({name: agent.spawner for name, agent in compiled.agents.items()})
    task_input = None
    if workspace is not None and (workspace.work_dir or workspace.project_root):
        task_input = TaskInput(
            project_root=str(workspace.project_root) if workspace.project_root else None,
            work_dir=str(workspace.work_dir) if workspace.work_dir else None,
        )
    return link(router, compiled.raw, engine, run=control, registry=registry, task_input=task_input)


async def link_warnings(compiled: CompiledBlueprint, registry: LayerRegistry | None = None) -> list[Diagnostic]:
    """Link the middleware once without running anything: its warnings, or `DiagnosticError`."""
    linked, warnings = link_stack(compiled, Engine(), RunControl(), None, registry)
    await linked.aclose()
    return warnings


async def preflight(
    compiled: CompiledBlueprint, workspace: Workspace | None = None, registry: LayerRegistry | None = None
) -> list[Diagnostic]:
    """Everything checked before a run starts (middleware config, projection root): the warnings, or
    `DiagnosticError` for what would make the run fail."""
    refuse_unavailable_kinds(compiled)
    projection_root(compiled, workspace or Workspace())
    return await link_warnings(compiled, registry)


async def run_blueprint(
    compiled: CompiledBlueprint,
    init_ctx: Any = None,
    *,
    engine: Engine | None = None,
    control: RunControl | None = None,
    journal: Journal | None = None,
    observer: RunObserver | None = None,
    externs: Mapping[str, Callable[..., Any]] | None = None,
    workspace: Workspace | None = None,
    registry: LayerRegistry | None = None,
) -> RunResult:
    """Evaluate the Blueprint's flow to the end (or failure, or cancellation).

    Raises `DiagnosticError` before anything runs if the middleware configuration is invalid.
    """
    refuse_unavailable_kinds(compiled)
    engine = engine or Engine()
    control = control or RunControl()
    linked, _ = link_stack(compiled, engine, control, workspace, registry)
    try:
        return await _run(compiled, init_ctx, engine, control, linked, journal, observer, externs, workspace)
    finally:
        await linked.aclose()


async def _run(
    compiled: CompiledBlueprint,
    init_ctx: Any,
    engine: Engine,
    control: RunControl,
    linked: LinkedSpawner,
    journal: Journal | None,
    observer: RunObserver | None,
    externs: Mapping[str, Callable[..., Any]] | None,
    workspace: Workspace | None,
) -> RunResult:
    token = engine.attach(f"run-{control.run_id}")
    dispatcher = EngineDispatcher(
        engine,
        token,
        linked,
        policies=agent_policies(compiled, workspace),
        metas={m["name"]: m.get("ctx") for m in compiled.raw.get("metas") or []},
        run=RunContext(control.run_id),
        journal=journal,
        observer=observer,
    )
    ctx = initial_ctx(compiled.raw, init_ctx)
    try:
        if journal is not None:
            return await _traced(engine, journal, _evaluate(compiled, ctx, control, linked, dispatcher, externs))
        return await _evaluate(compiled, ctx, control, linked, dispatcher, externs)
    finally:
        engine.close_session(token)


TRACED_EVENTS = ("mw.", "attempt_", "task_retry_scheduled", "task_cancelled", "task_suspended", "task_resumed")
"""Engine events a run's journal keeps: middleware decisions, retries, cancellations, suspensions."""


async def _traced(engine: Engine, journal: Journal, run: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run `run` while copying the engine events a run's history keeps into its journal."""
    stream = engine.events(TRACED_EVENTS)

    def copy(event: Event) -> None:
        journal.trace(
            event.kind, step_ref=event.data.get("agent"), attempt=event.data.get("attempt"), payload=event.to_json()
        )

    async def forward() -> None:
        async for event in stream:
            copy(event)

    forwarder = asyncio.create_task(forward())
    try:
        return await run
    finally:
        forwarder.cancel()
        await asyncio.gather(forwarder, return_exceptions=True)
        while (event := stream.get_nowait()) is not None:
            copy(event)
        stream.close()


async def _evaluate(
    compiled: CompiledBlueprint,
    ctx: Any,
    control: RunControl,
    linked: LinkedSpawner,
    dispatcher: EngineDispatcher,
    externs: Mapping[str, Callable[..., Any]] | None,
) -> RunResult:
    task = asyncio.create_task(run_flow(compiled.flow, ctx, dispatcher, externs=externs))
    control._task = task
    if control.reason is not None:
        task.cancel()
    result = RunResult("done", control.run_id)
    try:
        result.final_ctx = await asyncio.shield(task)
    except FlowFailed as exc:
        failed_step, verdict = exc.failed_step, exc.verdict_value
        if failed_step is None and dispatcher.last_failure is not None:
            failed_step, verdict = dispatcher.last_failure
        result.status = "failed"
        result.error = {"message": exc.message, "failed_step": failed_step, "verdict_value": verdict}
        result.partial_ctx = exc.partial_ctx
        if control.reason is not None:
            result.status = "cancelled"
            result.error["message"] = f"run cancelled: {control.reason}"
    except asyncio.CancelledError:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        result.status = "cancelled"
        result.error = {
            "message": f"run cancelled: {control.reason or 'cancelled'}",
            "failed_step": None,
            "verdict_value": None,
        }
    finally:
        control._task = None
    if result.status != "cancelled":
        await linked.drain()
    result.steps_dispatched = dispatcher.steps_dispatched
    result.steps_replayed = dispatcher.steps_replayed
    return result


__all__ = [
    "RunControl",
    "RunResult",
    "Workspace",
    "agent_policies",
    "initial_ctx",
    "link_warnings",
    "preflight",
    "projection_root",
    "run_blueprint",
]
