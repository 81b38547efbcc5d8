"""Spawn and worker errors with upstream's messages (defined by the engine's contract, `core.contract`)."""

from __future__ import annotations

from ..core.contract import (
    NotRegistered,
    RejectedByMiddleware,
    SpawnError,
    SpawnInternalError,
    WorkerCancelled,
    WorkerError,
    WorkerFailed,
)

__all__ = [
    "NotRegistered",
    "RejectedByMiddleware",
    "SpawnError",
    "SpawnInternalError",
    "WorkerCancelled",
    "WorkerError",
    "WorkerFailed",
]
