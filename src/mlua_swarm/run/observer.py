"""What the run layer reports while a run goes: steps starting and ending to an observer (the terminal
progress view is one), and its trace to a live feed (a server's event stream is one)."""

from __future__ import annotations

from typing import Any, Protocol

from ..ids import StepId


class RunObserver(Protocol):
    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        """A step was dispatched. `node_index` is its flow node's place (`flow.Step.index`, the same the
        step's history entry records), which tells apart several nodes of one agent; None for a step
        built by hand."""

    def step_finished(
        self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any
    ) -> None: ...


class LiveFeed(Protocol):
    """A host's live view of one run. Every call comes from the task executing the run."""

    def trace(self, kind: str, step_ref: str | None, attempt: int | None, payload: Any) -> None:
        """A trace event of the run (middleware decision, retry, cancellation); the feed records it
        instead of the run's journal."""

    async def step_recorded(self) -> None:
        """A step's entry was just recorded (only for a run with a journal): the feed's readers may
        take their turn before the next step runs."""

    def flow_ended(self) -> None:
        """The flow ended and every trace event was given; the run's result is stored next."""


class NullObserver:
    """Reports nothing (the default)."""

    def step_started(self, step_ref: str, step_id: StepId | None, node_index: int | None) -> None:
        return None

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        return None


__all__ = ["LiveFeed", "NullObserver", "RunObserver"]
