"""mlua-swarm: a swarm engine for declarative agent Blueprints.

The names most programs need are re-exported here; everything else lives in its layer
(`core`, `worker`, `middleware`, `flow`, `blueprint`, `run`, `store`).
"""

from .cancel import CancellationToken
from .core.config import EngineConfig, RetryPolicy
from .core.ctx import AgentContextView, Ctx
from .core.engine import DispatchOutcome, Engine, RunContext, TaskSpec, VerdictContract
from .core.state import StepStatus
from .diagnostics import Diagnostic, DiagnosticError
from .ids import ResumeKey, RunId, SessionId, StepId, TaskId, WorkerHandle, WorkerId
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

__all__ = [
    "AgentContextView",
    "Artifact",
    "CancellationToken",
    "CapToken",
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
    "RunContext",
    "RunId",
    "SessionId",
    "SpawnError",
    "SpawnInternalError",
    "SpawnerAdapter",
    "StepId",
    "StepStatus",
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
    "__version__",
    "wrap_join",
]
