"""JSON errors everywhere: `{"error": message, "details"?: any}`, whatever went wrong and wherever.

Route code raises `ApiError(status, message, details)`; engine and store errors are mapped here once,
so every route answers the same status for the same failure. A 500 tells the client only a short
reference: what failed (a type, a message naming a path, a query or a value) goes to the server's log
under that same reference, never to whoever sent the request.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..diagnostics import DiagnosticError
from ..errors import (
    AttemptClosed,
    BadSignature,
    MseError,
    OutputBudgetExceeded,
    RoleViolation,
    TaskNotFound,
    TokenExpired,
    TokenNotFound,
    TokenTaskMismatch,
    TokenUsesExhausted,
    VerdictRejected,
)
from ..store.errors import (
    BlueprintNotFound,
    Duplicate,
    RecordNotFound,
    RunNotResumable,
    StoreError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: its status, message and optional details."""

    def __init__(self, status: int, message: str, details: Any = None, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body larger than {limit} bytes", {"limit_bytes": limit}, headers={"connection": "close"}
        )


class BodyStalled(ApiError):
    def __init__(self, secs: float) -> None:
        super().__init__(
            408,
            f"the request body stalled: nothing arrived for {secs:g} s",
            {"hint": "send the body without pausing (or raise request_body_stall_secs)"},
            headers={"connection": "close"},
        )


def error_response(status: int, message: str, details: Any = None, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def diagnostics_details(exc: DiagnosticError) -> dict[str, Any]:
    return {"diagnostics": [d.to_json() for d in exc.diagnostics]}


def _store_status(exc: StoreError) -> int:
    if isinstance(exc, RunNotResumable):
        return {"status": 409, "conflict": 409, "no_snapshot": 422, "step": 422, "empty_log": 422}.get(exc.reason, 409)
    if isinstance(exc, RecordNotFound | BlueprintNotFound):
        return 404
    if isinstance(exc, Duplicate):
        return 409
    return 500


def map_exception(exc: BaseException) -> ApiError:
    """The API error an exception stands for."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        return ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)
    if isinstance(exc, DiagnosticError):
        first = exc.diagnostics[0].message if exc.diagnostics else "invalid input"
        return ApiError(400, first, diagnostics_details(exc))
    if isinstance(exc, BadSignature | TokenExpired):
        return ApiError(401, str(exc))
    if isinstance(exc, TokenTaskMismatch | RoleViolation):
        return ApiError(403, str(exc))
    if isinstance(exc, TokenNotFound | TokenUsesExhausted | AttemptClosed):
        return ApiError(410, str(exc), {"hint": "the attempt this credential belongs to has ended"})
    if isinstance(exc, TaskNotFound):
        return ApiError(410, str(exc), {"hint": "the step has ended and was released"})
    if isinstance(exc, OutputBudgetExceeded):
        return ApiError(413, str(exc), {"code": exc.code, "limit_bytes": exc.limit, "held_bytes": exc.held})
    if isinstance(exc, VerdictRejected):
        return ApiError(422, str(exc), {"code": exc.code})
    if isinstance(exc, StoreError):
        status = _store_status(exc)
        if status == 500:
            return internal_error(exc, {"code": exc.code})
        details: dict[str, Any] = {"code": exc.code}
        if exc.hint:
            details["hint"] = exc.hint
        return ApiError(status, exc.message, details)
    return internal_error(exc)


def internal_error(exc: BaseException, details: dict[str, Any] | None = None) -> ApiError:
    """A 500 naming only a fresh reference; the exception itself is logged under that reference."""
    ref = f"E-{secrets.token_hex(4)}"
    log.error("internal error (ref %s) in a route: %s: %s", ref, type(exc).__name__, exc, exc_info=exc)
    return ApiError(500, f"internal error (ref {ref}); the server's log has the details", details)


async def handle_exception(request: Request, exc: Exception) -> Response:
    err = map_exception(exc)
    return error_response(err.status, err.message, err.details, err.headers)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    cls: handle_exception for cls in (ApiError, HTTPException, DiagnosticError, MseError)
}
"""The errors routes and the engine raise by design, answered where they are raised (only a store
failure mapped to 500 is logged, under its reference). Any other exception is left to `InternalErrors`:
a handler registered here for plain `Exception` would go to Starlette's outermost middleware, which
re-raises after answering, so uvicorn would log a second traceback and close the connection."""


class InternalErrors:
    """The 500 of last resort: an exception no handler took is answered once, with a fresh reference,
    and logged once under it (`internal_error`); the connection stays open for the next request.

    An exception after the response began cannot be answered (its head is already on the wire): it
    is re-raised untouched so that uvicorn logs it and closes the connection, whose response is cut short.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            err = internal_error(exc)
            await error_response(err.status, err.message, err.details, err.headers)(scope, receive, send)


__all__ = [
    "EXCEPTION_HANDLERS",
    "ApiError",
    "BodyStalled",
    "BodyTooLarge",
    "InternalErrors",
    "error_response",
    "map_exception",
]
