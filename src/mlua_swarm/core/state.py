"""The step state machine.

`pending -> running -> pass | blocked | failed | cancelled | timeout`, `running <-> suspended`.
A step that ended `blocked`, `failed` or `timeout` may run again (a retry is a new attempt of the
same step); `pass` and `cancelled` are final. Anything else raises `InvalidTransition`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from ..errors import InvalidTransition
from ..ids import StepId


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    PASS = "pass"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


OutcomeKind = Literal["pass", "blocked", "skip", "cancelled", "timeout"]
"""`DispatchOutcome.kind`: how an attempt ended, in upstream's engine words (a failure raises instead)."""


class StepOutcome(StrEnum):
    """How a step ended, as the dispatcher, the run journal and the stores record it (a step
    entry's `status`, in upstream's words); `StepOutcome.of(kind)` reads the engine's outcome."""

    PASSED = "passed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @classmethod
    def of(cls, kind: OutcomeKind) -> StepOutcome:
        """The recorded outcome of an engine outcome kind."""
        return _OF_KIND[kind]


_OF_KIND: dict[str, StepOutcome] = {
    "pass": StepOutcome.PASSED,
    "skip": StepOutcome.SKIPPED,
    "blocked": StepOutcome.BLOCKED,
    "cancelled": StepOutcome.CANCELLED,
    "timeout": StepOutcome.TIMEOUT,
}

S = StepStatus
_RETRYABLE_END = frozenset({S.BLOCKED, S.FAILED, S.TIMEOUT})
ALLOWED: dict[StepStatus, frozenset[StepStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.PASS, S.BLOCKED, S.FAILED, S.CANCELLED, S.TIMEOUT, S.SUSPENDED}),
    S.SUSPENDED: frozenset({S.RUNNING, S.CANCELLED}),
    S.PASS: frozenset(),
    S.CANCELLED: frozenset(),
    S.BLOCKED: frozenset({S.RUNNING, S.CANCELLED}),
    S.FAILED: frozenset({S.RUNNING, S.CANCELLED}),
    S.TIMEOUT: frozenset({S.RUNNING, S.CANCELLED}),
}

ENDED = frozenset({S.PASS, S.BLOCKED, S.FAILED, S.CANCELLED, S.TIMEOUT})
"""An attempt is over; the step may still be retried unless it is `pass` or `cancelled`."""
FINAL = frozenset({S.PASS, S.CANCELLED})
SETTLED = ENDED | {S.SUSPENDED}
"""What `poll_task` waits for."""


def check_transition(step_id: StepId, current: StepStatus, target: StepStatus) -> None:
    if target not in ALLOWED[current]:
        raise InvalidTransition(step_id, current.value, target.value)


__all__ = ["ALLOWED", "ENDED", "FINAL", "SETTLED", "OutcomeKind", "StepOutcome", "StepStatus", "check_transition"]
