"""The engine's contract with worker kinds: what a spawner is, what a worker is, how they fail.

The engine starts an attempt by calling `SpawnerAdapter.spawn`, which returns a running `Worker`;
it touches that worker through three members only: `id`, `cancel_token()` and `join()`. One spawn
is one worker is one join. `join` carries no value: the value is the last `Final` (see
`core.output`) the worker put on the engine's output tail for its attempt. Spawning fails with a
`SpawnError`, a running worker with a `WorkerError`; the messages are upstream's.

Worker kinds (`mlua_swarm.worker`) and middleware build on this module; the engine needs nothing
above it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ..cancel import CancellationToken
from ..errors import MseError
from ..ids import StepId, WorkerId
from .ctx import Ctx

if TYPE_CHECKING:
    from ..tokens import CapToken
    from .engine import Engine


class Worker(ABC):
    """A running attempt."""

    @property
    @abstractmethod
    def id(self) -> WorkerId: ...

    @abstractmethod
    def cancel_token(self) -> CancellationToken: ...

    @abstractmethod
    async def join(self) -> None:
        """Wait for the end; raise `WorkerFailed(msg)` or `WorkerCancelled`."""

    def settled(self) -> bool:
        """True when the worker has already ended well, so `join` would return at once (the engine
        then skips it); False when unknown. A worker that may fail or still runs returns False."""
        return False


class SpawnerAdapter(ABC):
    """Builds one running `Worker` for one attempt."""

    @property
    def unavailable_reason(self) -> str | None:
        """Why this spawner cannot run in this process (a run refuses it before any step starts), or None."""
        return None

    @abstractmethod
    async def spawn(self, engine: Engine, ctx: Ctx, task_id: StepId, attempt: int, token: CapToken) -> Worker:
        """Start the attempt; raise `SpawnError` if it cannot start."""


class SpawnError(MseError):
    """Setting up a worker failed before it started running."""

    code = "spawn_error"


class NotRegistered(SpawnError):
    code = "not_registered"

    def __init__(self, agent: str) -> None:
        super().__init__(f"worker not registered: {agent}")
        self.agent = agent


class RejectedByMiddleware(SpawnError):
    code = "rejected_by_middleware"

    def __init__(self, reason: str) -> None:
        super().__init__(f"spawn rejected by middleware: {reason}")
        self.reason = reason


class SpawnInternalError(SpawnError):
    code = "spawn_internal"

    def __init__(self, msg: str) -> None:
        super().__init__(f"internal: {msg}")
        self.msg = msg


class WorkerError(MseError):
    """A running worker ended without success."""

    code = "worker_error"


class WorkerFailed(WorkerError):
    code = "worker_failed"

    def __init__(self, msg: str) -> None:
        super().__init__(f"worker fn returned error: {msg}")
        self.msg = msg


class WorkerCancelled(WorkerError):
    code = "worker_cancelled"

    def __init__(self) -> None:
        super().__init__("cancelled")


__all__ = [
    "NotRegistered",
    "RejectedByMiddleware",
    "SpawnError",
    "SpawnInternalError",
    "SpawnerAdapter",
    "Worker",
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
]
