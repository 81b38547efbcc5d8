"""mlua-swarm: a swarm engine for declarative agent Blueprints."""

from .cancel import CancellationToken
from .ids import ResumeKey, RunId, SessionId, StepId, TaskId, WorkerHandle, WorkerId
from .tokens import CapToken, Role, Verb

__version__ = "0.1.0"

__all__ = [
    "CancellationToken",
    "CapToken",
    "ResumeKey",
    "Role",
    "RunId",
    "SessionId",
    "StepId",
    "TaskId",
    "Verb",
    "WorkerHandle",
    "WorkerId",
    "__version__",
]
