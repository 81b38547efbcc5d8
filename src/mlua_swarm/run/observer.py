"""What the run layer reports as steps start and end; the terminal progress view is one observer."""

from __future__ import annotations

from typing import Any, Protocol

from ..ids import StepId


class RunObserver(Protocol):
    def step_started(self, step_ref: str, step_id: StepId | None) -> None: ...

    def step_finished(
        self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any
    ) -> None: ...


class NullObserver:
    """Reports nothing (the default)."""

    def step_started(self, step_ref: str, step_id: StepId | None) -> None:
        return None

    def step_finished(self, step_ref: str, step_id: StepId | None, status: str, elapsed: float, detail: Any) -> None:
        return None


__all__ = ["NullObserver", "RunObserver"]
