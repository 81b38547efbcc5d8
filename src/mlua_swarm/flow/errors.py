"""Errors of the flow layer: one `FlowError` base, parse errors with a location, runtime errors with a code."""

from __future__ import annotations

from typing import Any

from mlua_swarm.errors import MseError
from mlua_swarm.jsontext import text_of


class FlowError(MseError):
    """Base of every error the flow layer raises on purpose."""

    code = "flow_error"


class FlowParseError(FlowError):
    """The flow IR document is malformed; `json_path` says where, `hint` says how to fix it."""

    code = "flow_parse"

    def __init__(self, message: str, json_path: str, hint: str | None = None) -> None:
        text = f"{json_path}: {message}"
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)
        self.message = message
        self.json_path = json_path
        self.hint = hint


class PathError(FlowError):
    """A path string does not follow the path grammar; `position` is the 0-based offset of the problem."""

    code = "path_syntax"

    def __init__(self, message: str, text: str, position: int, hint: str | None = None) -> None:
        super().__init__(f"{message} at position {position} in path {text!r}")
        self.message = message
        self.text = text
        self.position = position
        self.hint = hint


class EvalError(FlowError):
    """A runtime error while evaluating the flow; `try` nodes catch exactly these."""

    code = "flow_eval"


class ExprError(EvalError):
    """An expression could not be evaluated."""

    code = "expr_error"


class PathNotFound(ExprError):
    """A read walked into a missing key or a non-object value."""

    code = "path_not_found"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"path not found: {path} ({detail})")
        self.path = path
        self.detail = detail


class ExprTypeError(ExprError):
    """An operand has the wrong JSON type for its op."""

    code = "type_error"


class ArithError(ExprError):
    """Arithmetic or ordering produced no number: division by zero, NaN, overflow."""

    code = "arith_error"


class ExternError(ExprError):
    """A `call_extern` named an unregistered function or the function raised."""

    code = "extern_error"

    def __init__(self, ref: str, detail: str) -> None:
        super().__init__(f"extern {ref!r}: {detail}")
        self.ref = ref
        self.detail = detail


class PathWriteError(EvalError):
    """A write met an existing non-object intermediate (nothing was written)."""

    code = "path_write"


class NonBoolCond(EvalError):
    """A `branch` condition evaluated to something other than a JSON boolean."""

    code = "non_bool_cond"


class StepBlocked(FlowError):
    """Raised by a dispatcher: the step ended with a blocked verdict carrying `value`."""

    code = "step_blocked"

    def __init__(self, value: Any) -> None:
        super().__init__(f"blocked: {text_of(value, lenient=True)}")
        self.value = value


class StepFailed(FlowError):
    """Raised by a dispatcher: the step ended any other non-passing way."""

    code = "step_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepError(EvalError):
    """A step's dispatch did not pass; wraps the dispatcher's reason with the step's agent ref."""

    code = "step_error"

    def __init__(self, ref: str, reason: BaseException, verdict_value: Any = None) -> None:
        detail = str(reason) if isinstance(reason, FlowError) else f"{type(reason).__name__}: {reason}"
        super().__init__(f"step {ref!r}: {detail}")
        self.ref = ref
        self.reason = reason
        self.verdict_value = verdict_value


class FanoutLaneCancelled(EvalError):
    """A fanout lane was cancelled by something other than its own fanout."""

    code = "lane_cancelled"


class FlowFailed(FlowError):
    """A run ended with an error no `try` caught; carries where it stopped and the ctx at that point."""

    code = "flow_failed"

    def __init__(
        self,
        message: str,
        *,
        failed_step: str | None = None,
        verdict_value: Any = None,
        partial_ctx: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.failed_step = failed_step
        self.verdict_value = verdict_value
        self.partial_ctx = partial_ctx if partial_ctx is not None else {}

    def to_json(self) -> dict[str, Any]:
        """The upstream launch-error shape: message, failed_step, verdict_value, partial_ctx."""
        return {
            "message": self.message,
            "failed_step": self.failed_step,
            "verdict_value": self.verdict_value,
            "partial_ctx": self.partial_ctx,
        }
