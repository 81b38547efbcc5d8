"""The run layer: drives a compiled Blueprint through the engine, with progress and persistence.

`Run` is the one object a run is: `async with Run(compiled, store=...) as run: await run.execute(init)`.
"""

from .observer import LiveFeed, RunObserver
from .plan import Workspace, compile_launch, launch_options
from .run import CancelScope, Run, RunResult, run_blueprint

__all__ = [
    "CancelScope",
    "LiveFeed",
    "Run",
    "RunObserver",
    "RunResult",
    "Workspace",
    "compile_launch",
    "launch_options",
    "run_blueprint",
]
