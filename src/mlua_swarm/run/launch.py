"""The run layer's names as they were before `Run` (kept while callers move to `mlua_swarm.run`)."""

from .plan import Workspace, agent_policies, compile_launch, initial_ctx, projection_root
from .run import RunResult, run_blueprint

__all__ = [
    "RunResult",
    "Workspace",
    "agent_policies",
    "compile_launch",
    "initial_ctx",
    "projection_root",
    "run_blueprint",
]
