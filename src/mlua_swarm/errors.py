"""Engine errors. Each carries a stable `code` so callers and the HTTP layer can map it."""

from __future__ import annotations

from typing import Any


class MseError(Exception):
    """Base of every error this package raises on purpose."""

    code: str = "mse_error"


class EngineError(MseError):
    code = "engine_error"


class BadSignature(EngineError):
    code = "bad_signature"

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"token signature does not verify (fingerprint {fingerprint})")
        self.fingerprint = fingerprint


class TokenExpired(EngineError):
    code = "token_expired"

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"token expired (fingerprint {fingerprint})")
        self.fingerprint = fingerprint


class TokenUsesExhausted(EngineError):
    code = "token_uses_exhausted"

    def __init__(self, fingerprint: str) -> None:
        super().__init__(f"token has no uses left or was revoked (fingerprint {fingerprint})")
        self.fingerprint = fingerprint


class TokenNotFound(EngineError):
    code = "token_not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"token not found: {what}")
        self.what = what


class RoleViolation(EngineError):
    code = "role_violation"

    def __init__(self, role: str, verb: str) -> None:
        super().__init__(f"role {role} may not {verb}")
        self.role = role
        self.verb = verb


class TokenTaskMismatch(EngineError):
    code = "token_task_mismatch"

    def __init__(self, bound: str, arg: str) -> None:
        super().__init__(f"token is bound to step {bound}, not {arg}")
        self.bound = bound
        self.arg = arg


class TaskNotFound(EngineError):
    code = "task_not_found"

    def __init__(self, step_id: str) -> None:
        super().__init__(f"step not found: {step_id}")
        self.step_id = step_id


class ResourceNotFound(EngineError):
    code = "resource_not_found"


class ResumeKeyNotFound(EngineError):
    code = "resume_key_not_found"


class PollTimeout(EngineError):
    code = "poll_timeout"


class SpawnDepthExceeded(EngineError):
    code = "spawn_depth_exceeded"

    def __init__(self, current: int, maximum: int) -> None:
        super().__init__(f"spawn depth {current} would exceed the maximum {maximum}")
        self.current = current
        self.maximum = maximum


class DispatchFailed(EngineError):
    """The attempt could not produce an outcome: spawn error, worker error, or no Final."""

    code = "dispatch_failed"


class VerdictRejected(EngineError):
    """A Final broke the agent's verdict contract; nothing was written."""

    code = "verdict_rejected"


class VerdictValueRejected(VerdictRejected):
    code = "verdict_value_rejected"

    def __init__(self, value: str, allowed: list[str]) -> None:
        super().__init__(f"verdict value {value!r} is not one of the allowed values {allowed}")
        self.value = value
        self.allowed = allowed


class VerdictPartMissing(VerdictRejected):
    code = "verdict_part_missing"

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"no staged 'verdict' part; expected one of {allowed}")
        self.allowed = allowed


class InvalidTransition(EngineError):
    code = "invalid_transition"

    def __init__(self, step_id: str, current: str, target: str) -> None:
        super().__init__(f"step {step_id}: illegal transition {current} -> {target}")
        self.step_id = step_id
        self.current = current
        self.target = target


class AttemptClosed(EngineError):
    """Output for an attempt that has already finished (or never started) is refused."""

    code = "attempt_closed"


class OutputBudgetExceeded(EngineError):
    """An output event would make its attempt's output weigh more than `max_attempt_output_bytes`;
    the event is refused and the attempt fails."""

    code = "output_budget_exceeded"

    def __init__(self, message: str, limit: int, held: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.held = held


class CheckPolicyStrict(EngineError):
    code = "check_policy_strict"

    def __init__(self, context: str, message: str) -> None:
        super().__init__(f"{context}: {message}")
        self.context = context


def error_payload(err: BaseException) -> dict[str, Any]:
    """A JSON-ready description of an error: its code and message."""
    code = err.code if isinstance(err, MseError) else type(err).__name__
    return {"code": code, "message": str(err)}
