"""mlua-swarm: a swarm engine for declarative agent Blueprints.

The names most programs need are re-exported here — `compile_blueprint`, `Run` (or the one-line
`run_blueprint`), `open_store`, and the engine's contract for writing workers; everything else
lives in its layer (`core`, `worker`, `middleware`, `flow`, `blueprint`, `run`, `store`). They are
imported on first use, so a light module such as `mlua_swarm.child` does not pay for the engine.

    compiled = compile_blueprint(raw, base_dir=Path("."))
    store = await open_store("sqlite:///runs.sqlite3")
    async with Run(compiled, store=store) as run:
        result = await run.execute({"topic": "owls"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_attributes

if TYPE_CHECKING:
    from .blueprint.compiler import CompiledBlueprint, compile_blueprint
    from .cancel import CancellationToken
    from .core.config import EngineConfig, RetryPolicy
    from .core.ctx import AgentContextView, Ctx
    from .core.engine import DispatchOutcome, Engine, RunContext, TaskSpec, VerdictContract
    from .core.state import StepOutcome, StepStatus
    from .diagnostics import Diagnostic, DiagnosticError
    from .flow import Skipped
    from .ids import ResumeKey, RunId, SessionId, StepId, TaskId, WorkerHandle, WorkerId
    from .run import Run, RunResult, run_blueprint
    from .store import RunStatus, Store, open_store
    from .tokens import CapToken, Role, Verb
    from .worker import MiddlewareWorker, Worker, WorkerJoinHandler, wrap_join
    from .worker.adapter import InProcSpawner, SpawnerAdapter, WorkerInvocation, WorkerResult
    from .worker.errors import (
        NotRegistered,
        RejectedByMiddleware,
        SpawnError,
        SpawnInternalError,
        WorkerCancelled,
        WorkerError,
        WorkerFailed,
    )
    from .worker.output import Artifact, FileRef, Final, Inline, Partial, Progress

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "CompiledBlueprint": ".blueprint.compiler",
    "compile_blueprint": ".blueprint.compiler",
    "Run": ".run",
    "RunResult": ".run",
    "run_blueprint": ".run",
    "RunStatus": ".store",
    "Store": ".store",
    "open_store": ".store",
    "StepOutcome": ".core.state",
    "Skipped": ".flow",
    "NotRegistered": ".worker.errors",
    "RejectedByMiddleware": ".worker.errors",
    "SpawnError": ".worker.errors",
    "SpawnInternalError": ".worker.errors",
    "WorkerCancelled": ".worker.errors",
    "WorkerError": ".worker.errors",
    "WorkerFailed": ".worker.errors",
    "AgentContextView": ".core.ctx",
    "Artifact": ".worker.output",
    "CancellationToken": ".cancel",
    "CapToken": ".tokens",
    "Ctx": ".core.ctx",
    "Diagnostic": ".diagnostics",
    "DiagnosticError": ".diagnostics",
    "DispatchOutcome": ".core.engine",
    "Engine": ".core.engine",
    "EngineConfig": ".core.config",
    "FileRef": ".worker.output",
    "Final": ".worker.output",
    "InProcSpawner": ".worker.adapter",
    "Inline": ".worker.output",
    "MiddlewareWorker": ".worker",
    "Partial": ".worker.output",
    "Progress": ".worker.output",
    "ResumeKey": ".ids",
    "RetryPolicy": ".core.config",
    "Role": ".tokens",
    "RunContext": ".core.engine",
    "RunId": ".ids",
    "SessionId": ".ids",
    "SpawnerAdapter": ".worker.adapter",
    "StepId": ".ids",
    "StepStatus": ".core.state",
    "TaskId": ".ids",
    "TaskSpec": ".core.engine",
    "Verb": ".tokens",
    "VerdictContract": ".core.engine",
    "Worker": ".worker",
    "WorkerHandle": ".ids",
    "WorkerId": ".ids",
    "WorkerInvocation": ".worker.adapter",
    "WorkerJoinHandler": ".worker",
    "WorkerResult": ".worker.adapter",
    "wrap_join": ".worker",
}


__getattr__, __dir__ = lazy_attributes(globals(), _EXPORTS)

__all__ = [
    "AgentContextView",
    "Artifact",
    "CancellationToken",
    "CapToken",
    "CompiledBlueprint",
    "Ctx",
    "Diagnostic",
    "DiagnosticError",
    "DispatchOutcome",
    "Engine",
    "EngineConfig",
    "FileRef",
    "Final",
    "InProcSpawner",
    "Inline",
    "MiddlewareWorker",
    "NotRegistered",
    "Partial",
    "Progress",
    "RejectedByMiddleware",
    "ResumeKey",
    "RetryPolicy",
    "Role",
    "Run",
    "RunContext",
    "RunId",
    "RunResult",
    "RunStatus",
    "SessionId",
    "Skipped",
    "SpawnError",
    "SpawnInternalError",
    "SpawnerAdapter",
    "StepId",
    "StepOutcome",
    "StepStatus",
    "Store",
    "TaskId",
    "TaskSpec",
    "Verb",
    "VerdictContract",
    "Worker",
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
    "WorkerHandle",
    "WorkerId",
    "WorkerInvocation",
    "WorkerJoinHandler",
    "WorkerResult",
    "compile_blueprint",
    "open_store",
    "run_blueprint",
    "wrap_join",
]
