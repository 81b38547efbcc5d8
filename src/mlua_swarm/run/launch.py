"""The run layer's names as they were before `Run` (kept while callers move to `mlua_swarm.run`)."""

from .plan import Workspace, agent_policies, compile_launch, initial_ctx, projection_root
from .run import RunControl, RunResult, run_blueprint

__all__ = [
    "RunControl",
    "RunResult",
    "Workspace",
    "agent_policies",
    "compile_launch",
    "initial_ctx",
    "projection_root",
    "run_blueprint",
]
