"""Spawn and worker errors with upstream's messages."""

from __future__ import annotations

from ..errors import MseError


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
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
]
