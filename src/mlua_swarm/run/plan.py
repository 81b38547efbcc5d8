"""What a run is built from before anything runs: the initial ctx, the workspace, the per-agent
policies, the linked spawner stack, and the compiled Blueprint of a stored launch snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..blueprint.compiler import CompiledBlueprint, compile_blueprint, fn_registry
from ..core.config import CheckPolicy
from ..core.engine import Engine
from ..core.projection import DEFAULT_DIR_TEMPLATE, Projection
from ..diagnostics import Diagnostic, DiagnosticError, Location
from ..middleware import CancellableRun, LayerRegistry, LinkedSpawner, TaskInput, link
from ..middleware.link import plan_link
from ..services import RuntimeServices
from ..store.records import LaunchSnapshot
from ..worker.router import AgentRouter
from .dispatcher import AgentPolicy


def initial_ctx(compiled: CompiledBlueprint, init_ctx: Any) -> Any:
    """`default_init_ctx` shallow-merged under the launch's init ctx (the launch wins)."""
    default = compiled.blueprint.default_init_ctx
    if init_ctx is None:
        return dict(default) if isinstance(default, Mapping) else ({} if default is None else default)
    if isinstance(default, Mapping) and isinstance(init_ctx, Mapping):
        return {**default, **init_ctx}
    return init_ctx


@dataclass(frozen=True, slots=True)
class Workspace:
    """Where a run works and what its launch told it about the task.

    The folders are where step outputs may be written (`projection_placement.root` picks one);
    `task_metadata` is the launch's free-form JSON about the task, which steps read from their
    context view (`task_metadata`; `_TASK_METADATA` in Lua).
    """

    work_dir: Path | None = None
    project_root: Path | None = None
    task_metadata: Any = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Workspace:
        """The workspace named by launch options (`work_dir`, `project_root`, `task_metadata`; see `launch_options`)."""
        work_dir, project_root = options.get("work_dir"), options.get("project_root")
        return cls(
            Path(work_dir) if work_dir else None,
            Path(project_root) if project_root else None,
            options.get("task_metadata"),
        )


def projection_root(compiled: CompiledBlueprint, workspace: Workspace) -> Path | None:
    """Where step outputs are projected, or None; strict check policy without a root is refused."""
    placement = compiled.blueprint.projection_placement
    if placement is not None and placement.root == "project_root":
        root = workspace.project_root or workspace.work_dir
    else:
        root = workspace.work_dir or workspace.project_root
    if root is None and compiled.blueprint.check_policy == "strict":
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
    root = projection_root(compiled, workspace or Workspace())
    placement = compiled.blueprint.projection_placement
    template = (placement.dir_template if placement is not None else None) or DEFAULT_DIR_TEMPLATE
    check = CheckPolicy(compiled.blueprint.check_policy or "warn")
    policies: dict[str, AgentPolicy] = {}
    for name, agent in compiled.agents.items():
        projection = None
        if root is not None:
            step_name = compiled.step_names.canonical_of(name) or name
            projection = Projection(root, step_name, template, check)
        policies[name] = AgentPolicy(agent.timeout_secs, agent.retry, agent.verdict, agent.submit_format, projection)
    return policies


def link_stack(
    compiled: CompiledBlueprint,
    engine: Engine,
    run: CancellableRun,
    workspace: Workspace | None = None,
    registry: LayerRegistry | None = None,
) -> tuple[LinkedSpawner, list[Diagnostic]]:
    """The agent router wrapped in the middleware the Blueprint asks for (a `registry` other than
    the one it was compiled with re-checks its `spawner_hints` against that registry)."""
    router = AgentRouter({name: agent.spawner for name, agent in compiled.agents.items()})
    task_input = None
    if workspace is not None and (workspace.work_dir or workspace.project_root or workspace.task_metadata is not None):
        task_input = TaskInput(
            project_root=str(workspace.project_root) if workspace.project_root else None,
            work_dir=str(workspace.work_dir) if workspace.work_dir else None,
            task_metadata=workspace.task_metadata,
        )
    plan = (
        compiled.link if registry is None or registry is compiled.link.registry else plan_link(compiled.raw, registry)
    )
    return link(router, plan, engine, run=run, task_input=task_input)


def launch_options(
    workspace: Workspace,
    *,
    base_dir: Path | None = None,
    fns: Mapping[str, str] | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The launch options a stored run keeps so `compile_launch` rebuilds it exactly."""
    return {
        "base_dir": str(base_dir) if base_dir is not None else None,
        "fns": dict(fns or {}),
        "source": source,
        "work_dir": str(workspace.work_dir) if workspace.work_dir else None,
        "project_root": str(workspace.project_root) if workspace.project_root else None,
        "task_metadata": workspace.task_metadata,
    }


def compile_launch(
    launch: LaunchSnapshot, *, services: RuntimeServices | None = None
) -> tuple[CompiledBlueprint, Workspace]:
    """Compile a stored launch snapshot exactly as its first run did (with the host's `services`); its workspace."""
    options = launch.options
    base_dir = Path(options.get("base_dir") or ".")
    source = options.get("source")
    fns = fn_registry(options.get("fns") or {}, base_dir, source)
    compiled = compile_blueprint(launch.blueprint, base_dir=base_dir, fns=fns, source=source, services=services)
    return compiled, Workspace.from_options(options)


__all__ = [
    "Workspace",
    "agent_policies",
    "compile_launch",
    "initial_ctx",
    "launch_options",
    "link_stack",
    "projection_root",
]
