"""Worker output events (defined by the engine's contract in `core.output`) and the sink that submits them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.output import (
    Artifact,
    ContentRef,
    FileRef,
    Final,
    Inline,
    OutputEvent,
    OutputEventError,
    OutputSink,
    Partial,
    Progress,
    parse_content_ref,
    parse_output_event,
)

if TYPE_CHECKING:
    from ..core.engine import Engine
    from ..ids import StepId
    from ..tokens import CapToken


class EngineSink(OutputSink):
    """Submits each event to the engine for one attempt; artifacts it submits become the worker's parts."""

    __slots__ = ("attempt", "engine", "task_id", "token")

    def __init__(self, engine: Engine, token: CapToken, task_id: StepId, attempt: int) -> None:
        self.engine = engine
        self.token = token
        self.task_id = task_id
        self.attempt = attempt

    async def emit(self, event: OutputEvent) -> None:
        await self.engine.submit_output(self.token, self.task_id, self.attempt, event, stage=True)


__all__ = [
    "Artifact",
    "ContentRef",
    "EngineSink",
    "FileRef",
    "Final",
    "Inline",
    "OutputEvent",
    "OutputEventError",
    "OutputSink",
    "Partial",
    "Progress",
    "parse_content_ref",
    "parse_output_event",
]
