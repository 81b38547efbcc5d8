"""Operators: people and AI agents that hold a run's seats over WebSocket (see docs/operators.md).

`OperatorHub` (server side: sessions, parking, seats), the `operator` agent kind, the frames, and
`OperatorClient`, the Python library an operator is written with.
"""

from __future__ import annotations

from .client import OperatorClient, OperatorClientError, SubAgent
from .frames import (
    AnswerFrame,
    AskFrame,
    CancelFrame,
    HookAckFrame,
    HookAfterFrame,
    HookBeforeFrame,
    SpawnAckFrame,
    SpawnFrame,
    SpawnHaltFrame,
    WorkerBinding,
)
from .hub import OperatorHub, OperatorHubConfig

__all__ = [
    "AnswerFrame",
    "AskFrame",
    "CancelFrame",
    "HookAckFrame",
    "HookAfterFrame",
    "HookBeforeFrame",
    "OperatorClient",
    "OperatorClientError",
    "OperatorHub",
    "OperatorHubConfig",
    "SpawnAckFrame",
    "SpawnFrame",
    "SpawnHaltFrame",
    "SubAgent",
    "WorkerBinding",
]
